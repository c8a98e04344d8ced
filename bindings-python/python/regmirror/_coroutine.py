"""The coroutine ``AsyncMirror.sync()`` returns (a coroutine, so ``asyncio.create_task()`` and
``TaskGroup`` take it). The native side starts the run when the coroutine first runs and settles
``future`` from its own thread through ``loop.call_soon_threadsafe``; a cancelled coroutine
cancels the run."""

import asyncio
from collections.abc import Callable
from typing import Any, Protocol


class _Run(Protocol):
    def cancel(self) -> None: ...


def _settle(future: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    if future.done():  # cancelled meanwhile
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


async def run(start: Callable[..., _Run]) -> Any:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    handle = start(loop, future, _settle)
    try:
        return await future
    finally:
        handle.cancel()  # nothing once the run has ended
