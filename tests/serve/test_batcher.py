"""Dynamic batching and the bounded queue, with a run function that counts its calls."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from spikeformer.serve.batcher import DynamicBatcher, QueueFullError


def _run_factory(calls, delay=0.0):
    def run(x):
        calls.append(len(x))
        time.sleep(delay)
        return x.flatten(1).sum(1, keepdim=True).repeat(1, 2), torch.arange(len(x))

    return run


def test_requests_are_batched_and_results_routed_back():
    calls = []

    async def main():
        b = DynamicBatcher(
            _run_factory(calls), ThreadPoolExecutor(1), max_batch_size=8, max_delay_s=0.05, capacity=100, label="t"
        )
        b.start()
        xs = [torch.full((1, 1, 2, 2), float(i)) for i in range(6)]
        results = await asyncio.gather(*(b.submit(x) for x in xs))
        await b.stop()
        return results

    results = asyncio.run(main())
    assert calls == [6]  # one batch for six concurrent requests
    for i, r in enumerate(results):
        assert r.logits[0, 0].item() == 4 * i and r.batch_size == 6


def test_disabled_batching_runs_each_request_alone():
    calls = []

    async def main():
        b = DynamicBatcher(_run_factory(calls), ThreadPoolExecutor(1), 8, 0.05, 100, "t", enabled=False)
        b.start()
        await asyncio.gather(*(b.submit(torch.zeros(1, 1, 2, 2)) for _ in range(4)))
        await b.stop()

    asyncio.run(main())
    assert calls == [1, 1, 1, 1]


def test_full_queue_rejects_instead_of_growing():
    calls = []
    gate = threading.Event()

    def slow(x):
        gate.wait(5)
        return _run_factory(calls)(x)

    async def main():
        b = DynamicBatcher(slow, ThreadPoolExecutor(1), max_batch_size=1, max_delay_s=0, capacity=2, label="t")
        b.start()
        first = asyncio.ensure_future(b.submit(torch.zeros(1, 1, 2, 2)))
        await asyncio.sleep(0.05)  # the first request is running; two more fill the queue
        queued = [asyncio.ensure_future(b.submit(torch.zeros(1, 1, 2, 2))) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFullError, match="full"):
            await b.submit(torch.zeros(1, 1, 2, 2))
        gate.set()
        await asyncio.gather(first, *queued)
        await b.stop()

    asyncio.run(main())
    assert calls == [1, 1, 1]
