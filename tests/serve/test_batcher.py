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


@pytest.mark.security
def test_queue_is_bounded_in_images_not_only_in_requests():
    calls = []
    gate = threading.Event()

    def slow(x):
        gate.wait(5)
        return _run_factory(calls)(x)

    async def main():
        b = DynamicBatcher(slow, ThreadPoolExecutor(1), 256, 0, capacity=100, label="t", capacity_images=300)
        b.start()
        first = asyncio.ensure_future(b.submit(torch.zeros(1, 1, 2, 2)))
        await asyncio.sleep(0.05)  # running: the queue is empty again
        queued = [asyncio.ensure_future(b.submit(torch.zeros(128, 1, 2, 2))) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert b.queued_images == 256
        with pytest.raises(QueueFullError, match=r"256 images waiting, at most 300; this request has 128"):
            await b.submit(torch.zeros(128, 1, 2, 2))  # 3 requests of 100 allowed, but 384 images
        small = asyncio.ensure_future(b.submit(torch.zeros(44, 1, 2, 2)))  # 300 images: fits
        gate.set()
        await asyncio.gather(first, *queued, small)
        assert b.queued_images == 0
        alone = await b.submit(torch.zeros(500, 1, 2, 2))  # larger than the limit, nothing waiting: runs alone
        await b.stop()
        return alone

    assert asyncio.run(main()).batch_size == 500
    assert sum(calls) == 801  # every image ran once


@pytest.mark.security
def test_free_memory_goes_back_once_the_queue_has_been_idle(monkeypatch):
    from spikeformer.serve import batcher as batcher_module

    trims, threads = [], []

    def trim():
        trims.append(time.monotonic())
        threads.append(threading.current_thread().name)
        return True

    monkeypatch.setattr(batcher_module, "release_free_memory", trim)

    async def main():
        executor = ThreadPoolExecutor(1, thread_name_prefix="inference")
        b = DynamicBatcher(_run_factory([]), executor, 8, 0, capacity=100, label="t", idle_trim_s=0.2)
        b.start()
        for _ in range(6):  # busy: a request every 0.05 s, never 0.2 s idle
            await b.submit(torch.zeros(1, 1, 2, 2))
            await asyncio.sleep(0.05)
        busy = len(trims)
        await asyncio.sleep(0.5)  # idle: one trim, not one per idle period of the timer
        idle = len(trims)
        await asyncio.sleep(0.5)  # still idle, no batch since: no second trim
        quiet = len(trims)
        await b.submit(torch.zeros(1, 1, 2, 2))
        await asyncio.sleep(0.5)
        await b.stop()
        return busy, idle, quiet, len(trims)

    assert asyncio.run(main()) == (0, 1, 1, 2)
    assert all(name.startswith("inference") for name in threads)  # in the inference thread, never beside a batch


def test_no_trim_when_turned_off(monkeypatch):
    from spikeformer.serve import batcher as batcher_module

    trims = []
    monkeypatch.setattr(batcher_module, "release_free_memory", lambda: trims.append(1))

    async def main():
        b = DynamicBatcher(_run_factory([]), ThreadPoolExecutor(1), 8, 0, capacity=100, label="t")
        b.start()
        await b.submit(torch.zeros(1, 1, 2, 2))
        await asyncio.sleep(0.3)
        await b.stop()

    asyncio.run(main())
    assert trims == []
