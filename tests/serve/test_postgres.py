"""The service on a real PostgreSQL: records land there, an unmigrated schema is refused, an outage degrades
readiness while inference goes on, and buffered records are written once the database is back."""

import subprocess
import sys
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pg_cluster import PostgresCluster
from spikeformer.serve.app import create_app
from spikeformer.store import Database, InferenceRecordStore
from support import make_settings


@pytest.fixture(scope="module")
def cluster():
    c = PostgresCluster()
    yield c
    c.stop()


def _body():
    img = np.random.default_rng(1).integers(0, 256, size=(1, 28, 28)).astype(np.uint8)
    return {"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "UINT8", "data": img.flatten().tolist()}]}


def _count(url: str) -> int:
    db = Database(url)
    try:
        with db.session() as s:
            return InferenceRecordStore(s).count()
    finally:
        db.dispose()


def _wait(predicate, seconds=15.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_serve_refuses_an_unmigrated_postgres_and_says_how_to_fix_it(cluster, repository):
    url = cluster.create_database("unmigrated")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "spikeformer.cli",
            "serve",
            "--model-repository",
            str(repository),
            "--database-url",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert "spikeformer db upgrade" in r.stderr
    up = subprocess.run(
        [sys.executable, "-m", "spikeformer.cli", "db", "upgrade", "--database-url", url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode == 0, up.stderr
    Database(url).check_schema()


def test_outage_degrades_readiness_buffers_records_and_recovers(cluster, repository):
    url = cluster.create_database("outage")
    Database(url).upgrade()
    settings = make_settings(repository, url)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v2/models/tiny/infer", json=_body()).status_code == 200
        assert _wait(lambda: _count(url) == 1)
        assert _wait(lambda: "spikeformer_db_connections_max 60.0" in client.get("/metrics").text)
        cluster.stop_server("fast")
        try:
            for _ in range(5):
                assert client.post("/v2/models/tiny/infer", json=_body()).status_code == 200  # inference goes on
            assert _wait(lambda: client.get("/v2/health/ready").json()["database"] == "degraded")
            ready = client.get("/v2/health/ready")
            assert ready.status_code == 200 and ready.json()["records_buffered"] == 5
            metrics = client.get("/metrics").text
            assert "spikeformer_records_buffered 5.0" in metrics and "spikeformer_database_up 0.0" in metrics
        finally:
            cluster.start_server()
        assert _wait(lambda: client.get("/v2/health/ready").json()["database"] == "ok")
        assert _count(url) == 6  # nothing lost, nothing written twice


def test_record_buffer_overflow_is_counted_not_silent(cluster, repository):
    url = cluster.create_database("overflow")
    Database(url).upgrade()
    settings = make_settings(repository, url, record_buffer_size=10)
    with TestClient(create_app(settings)) as client:
        cluster.stop_server("fast")
        try:
            for _ in range(14):
                assert client.post("/v2/models/tiny/infer", json=_body()).status_code == 200
            body = client.get("/v2/health/ready").json()
            assert body["records_buffered"] == 10 and body["records_dropped"] == 4
            assert "spikeformer_records_dropped_total 4.0" in client.get("/metrics").text
        finally:
            cluster.start_server()
        assert _wait(lambda: _count(url) == 10)
