"""Dynamic batching: requests wait up to ``max_delay`` for others, then run as one batch off the event loop.

A bounded queue (``capacity`` requests, and ``capacity_images`` images in all: a request may carry up to
``max_images_per_request`` images, so a count of requests alone does not bound the memory the queue holds) rejects new
work with ``QueueFullError`` instead of growing without limit; the service turns that into 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import torch

from spikeformer.runtime.memory import release_free_memory
from spikeformer.serve import metrics

__all__ = ["DynamicBatcher", "QueueFullError", "BatchResult"]


class QueueFullError(RuntimeError):
    """The batch queue is full: the caller should retry later."""


@dataclass
class BatchResult:
    """What one request gets back: its rows of the batch output and the timings of its batch."""

    logits: torch.Tensor
    spikes: torch.Tensor
    queue_s: float
    compute_s: float
    batch_size: int


@dataclass
class _Item:
    x: torch.Tensor
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """Collects requests for one model version and runs them in batches.

    Args:
        run: ``[N, C, H, W] -> (logits [N, K], spikes [N])``, called in ``executor`` (never on the event loop).
        executor: a thread pool (torch releases the GIL inside kernels).
        max_batch_size: most images per executed batch (a single larger request runs alone).
        max_delay_s: how long the first request of a batch waits for company (0 with ``enabled=False``).
        capacity: most requests waiting; beyond it ``submit`` raises ``QueueFullError``.
        label: model label for metrics.
        capacity_images: most images waiting in all (``None``: no limit); a request that would go beyond it raises
            ``QueueFullError``, except when nothing is waiting (a single request larger than the limit runs alone).
        idle_trim_s: after this long with nothing queued (and a batch run since), hand the heap's free memory back to
            the kernel (``spikeformer.runtime.memory.release_free_memory``); 0: never.
    """

    def __init__(
        self,
        run: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        executor: Executor,
        max_batch_size: int,
        max_delay_s: float,
        capacity: int,
        label: str,
        enabled: bool = True,
        capacity_images: int | None = None,
        idle_trim_s: float = 0.0,
    ) -> None:
        self._run = run
        self._executor = executor
        self.max_batch_size = max_batch_size if enabled else 1
        self.max_delay_s = max_delay_s if enabled else 0.0
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.capacity = capacity  # admission limit; thermal protection may lower it at run time
        self.capacity_images = capacity_images
        self._images = 0  # images of the requests submitted and not yet taken into a batch
        self.idle_trim_s = idle_trim_s
        self._trim_due = False  # a batch ran since the heap was last trimmed
        self._label = label
        self._task: asyncio.Task | None = None
        self._pending: _Item | None = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def queued_images(self) -> int:
        """Images of the requests waiting for a batch."""
        return self._images

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self._label}")

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued (up to ``timeout``), then stop."""
        if self._task is None:
            return
        deadline = time.perf_counter() + timeout
        while (self._queue.qsize() or self._pending) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._pending, self._images = None, 0
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(QueueFullError("the model is shutting down"))

    async def submit(self, x: torch.Tensor) -> BatchResult:
        """Queue ``x [n, C, H, W]`` and wait for its result."""
        if self._queue.qsize() >= self.capacity:
            raise QueueFullError(f"the queue of {self._label} is full ({self.capacity} requests)")
        if self.capacity_images is not None and self._images and self._images + len(x) > self.capacity_images:
            raise QueueFullError(
                f"the queue of {self._label} is full ({self._images} images waiting, at most {self.capacity_images}; "
                f"this request has {len(x)})"
            )
        item = _Item(x, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(item)
        self._images += len(x)
        metrics.QUEUE_DEPTH.labels(self._label).set(self._queue.qsize())
        return await item.future

    async def _next(self) -> _Item:
        """The next request; after ``idle_trim_s`` without one, the heap's free memory goes back to the kernel once
        (in the inference thread, so it never runs beside a batch)."""
        if self._pending is not None:
            return self._pending
        if self.idle_trim_s > 0 and self._trim_due:
            try:
                return await asyncio.wait_for(self._queue.get(), self.idle_trim_s)
            except TimeoutError:
                self._trim_due = False
                await asyncio.get_running_loop().run_in_executor(self._executor, release_free_memory)
        return await self._queue.get()

    async def _collect(self) -> list[_Item]:
        first = await self._next()
        self._pending = None
        batch, size = [first], len(first.x)
        self._images -= len(first.x)
        deadline = first.enqueued + self.max_delay_s
        while size < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            try:
                item = (
                    self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
                )
            except (asyncio.QueueEmpty, TimeoutError):
                break
            if size + len(item.x) > self.max_batch_size:
                self._pending = item  # starts the next batch
                break
            batch.append(item)
            size += len(item.x)
            self._images -= len(item.x)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            metrics.QUEUE_DEPTH.labels(self._label).set(self._queue.qsize())
            live = [b for b in batch if not b.future.done()]  # timed-out requests are skipped
            if not live:
                continue
            x = torch.cat([b.x for b in live])
            start = time.perf_counter()
            try:
                logits, spikes = await loop.run_in_executor(self._executor, self._run, x)
            except Exception as e:  # noqa: BLE001 - delivered to every waiting request
                for b in live:
                    if not b.future.done():
                        b.future.set_exception(e)
                continue
            compute = time.perf_counter() - start
            self._trim_due = True
            metrics.BATCH_SIZE.labels(self._label).observe(len(x))
            metrics.COMPUTE_LATENCY.labels(self._label).observe(compute)
            offset = 0
            for b in live:
                n = len(b.x)
                if not b.future.done():
                    b.future.set_result(
                        BatchResult(
                            logits[offset : offset + n],
                            spikes[offset : offset + n],
                            start - b.enqueued,
                            compute,
                            len(x),
                        )
                    )
                offset += n
