"""``spikeformer serve`` as a real process on loopback: overload answers 503, SIGTERM drains and flushes."""

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from spikeformer.store import Database, InferenceRecordStore
from support import start_server


@pytest.fixture
def server(repository, tmp_path):
    procs = []

    def start(**env_settings):
        db_url = f"sqlite:///{tmp_path / 'server.db'}"
        proc, url = start_server(repository, db_url, **env_settings)
        procs.append(proc)
        return proc, url, db_url

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _body(n=1):
    imgs = np.random.default_rng(0).integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
    return {"inputs": [{"name": "x", "shape": [n, 28, 28], "datatype": "UINT8", "data": imgs.flatten().tolist()}]}


def test_overload_answers_503_with_retry_after_and_never_500(server):
    proc, url, _ = server(queue_capacity=2, max_batch_size=1, max_queue_delay_ms=0)
    with ThreadPoolExecutor(32) as pool:
        responses = list(
            pool.map(lambda _: httpx.post(f"{url}/v2/models/tiny/infer", json=_body(8), timeout=30), range(64))
        )
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(503) > 0 and codes.count(200) > 0
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["Retry-After"] == "1" and "full" in rejected.json()["error"]
    assert httpx.get(f"{url}/v2/health/live").status_code == 200


def test_sigterm_finishes_in_flight_requests_and_flushes_records(server):
    proc, url, db_url = server(record_flush_interval_s=30)  # records stay buffered until shutdown
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(httpx.post, f"{url}/v2/models/tiny/infer", json=_body(16), timeout=60) for _ in range(8)]
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        codes = [f.result().status_code for f in futures]
    assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a graceful shutdown
    assert codes.count(200) == len(codes)
    with Database(db_url).session() as s:
        assert InferenceRecordStore(s).count() == len(codes)
