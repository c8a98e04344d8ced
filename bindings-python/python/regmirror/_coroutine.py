"""The coroutine ``AsyncMirror.sync()`` returns. The native side makes an asyncio future, which
``asyncio.create_task()`` and ``TaskGroup`` do not take; this awaits it inside a coroutine, and
makes it only when the coroutine first runs (so an un-awaited coroutine starts no sync)."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def run(start: Callable[[], Awaitable[T]]) -> T:
    return await start()
