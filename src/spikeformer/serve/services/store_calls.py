"""Store calls from async code: run off the event loop; a database that is down becomes a 503 with a reason."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from spikeformer.serve.errors import unavailable
from spikeformer.store import StoreError

__all__ = ["run_store"]

T = TypeVar("T")


async def run_store(fn: Callable[[], T], what: str) -> T:
    """Run ``fn`` (blocking store work: open a session, call repositories) in the default executor.

    Args:
        fn: The blocking call, without arguments (a closure or ``functools.partial``).
        what: What the call does, for the 503 message: ``"queue the job"`` gives
            ``"cannot queue the job: the database is unavailable (<reason>)"``.

    Raises:
        ServiceError: 503 with ``Retry-After`` when the store raised :class:`StoreError`.
    """
    try:
        return await asyncio.get_running_loop().run_in_executor(None, fn)
    except StoreError as e:
        raise unavailable(f"cannot {what}: the database is unavailable ({e})") from None
