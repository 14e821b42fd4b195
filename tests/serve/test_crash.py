"""A crash of ``spikeformer serve`` (SIGKILL under load) loses no record of a request that was answered."""

from __future__ import annotations

import re
import signal
import threading
import time

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from spikeformer.store import Database
from spikeformer.store.tables import InferenceRecord
from support import start_server

CLIENTS = 4
LOAD_S = 2.0


def _body() -> dict:
    imgs = np.random.default_rng(0).integers(0, 256, size=(1, 28, 28)).astype(np.uint8)
    return {"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "UINT8", "data": imgs.flatten().tolist()}]}


def _load(url: str, stop: threading.Event, answered: list[str]) -> None:
    body = _body()
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            try:
                r = client.post(f"{url}/v2/models/tiny/infer", json=body)
            except httpx.HTTPError:
                return  # the server is gone: this request was never answered
            if r.status_code == 200:
                answered.append(r.json()["parameters"]["record_id"])


@pytest.mark.security
def test_sigkill_under_load_loses_no_answered_record_and_writes_none_twice(repository, tmp_path):
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    # Flushes (and spool truncation) happen during the load; the kill lands between two of them.
    env = {"record_flush_interval_s": 0.5, "record_spool_dir": tmp_path / "spool"}
    proc, url = start_server(repository, db_url, **env)
    answered: list[str] = []
    stop = threading.Event()
    try:
        threads = [threading.Thread(target=_load, args=(url, stop, answered)) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(LOAD_S)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        stop.set()
        for t in threads:
            t.join(15)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(answered) > 20, "too little load to test anything"

    proc, url = start_server(repository, db_url, **env)  # ready means the spool was replayed
    try:
        with Database(db_url).session() as s:
            ids = set(answered)
            stored = s.execute(
                select(InferenceRecord.id, func.count()).where(InferenceRecord.id.in_(ids)).group_by(InferenceRecord.id)
            ).all()
        counts = dict(stored)
        missing = ids - set(counts)
        assert not missing, f"{len(missing)} of {len(ids)} answered requests have no record after the crash"
        assert all(n == 1 for n in counts.values())
        assert len(ids) == len(answered), "a record id was answered twice"
        replayed = re.search(r"^spikeformer_records_replayed_total (\S+)$", httpx.get(f"{url}/metrics").text, re.M)
        assert replayed and float(replayed.group(1)) > 0, "the restart read the dead process's spool back"
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not list((tmp_path / "spool").glob("*.jsonl")), "the spool is emptied once its records are written"
