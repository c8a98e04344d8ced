"""The coroutines the async classes return (coroutines, so ``asyncio.create_task()`` and
``TaskGroup`` take them). The native side starts the work when the coroutine first runs and
settles ``future`` from its own thread through ``loop.call_soon_threadsafe``; a cancelled
coroutine cancels the work, and with ``wind_down`` waits for it to end (a worker finishing the
runs in flight) before the cancellation completes."""

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


async def run(start: Callable[..., _Run], wind_down: bool = False) -> Any:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    handle = start(loop, future, _settle)
    try:
        if not wind_down:
            return await future
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            handle.cancel()
            # The work is bounded after a cancel (a worker's shutdown deadline); another
            # cancel stops waiting for it.
            await asyncio.wait([future])
            raise
    finally:
        handle.cancel()  # nothing once the run has ended
