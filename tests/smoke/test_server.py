"""`spikeformer smoke` and `spikeformer incident close --smoke-url` against real `spikeformer serve` processes: it
passes on a healthy service, and fails, naming the failing checks, when the only version of the required model is
corrupted and reloaded, or when the PostgreSQL server under the service stops."""

from __future__ import annotations

import json
import time

import httpx
from typer.testing import CliRunner

from spikeformer.cli import app
from spikeformer.ops.incidents import IncidentService
from spikeformer.store import ApiKeyStore, Database
from support import start_server

runner = CliRunner()


def _admin_key(db_url: str) -> str:
    db = Database(db_url)
    db.upgrade()
    with db.session() as s:
        key, _ = ApiKeyStore(s).create("smoke", ["admin"])
    db.dispose()
    return key


def _smoke(url: str, key: str, *extra: str) -> tuple[int, dict]:
    out = runner.invoke(app, ["smoke", "--url", url, "--api-key", key, "--json", *extra])
    return out.exit_code, json.loads(out.stdout)


def _statuses(result: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in result["checks"]}


def _resolved_incident(db_url: str, title: str) -> int:
    db = Database(db_url)
    svc = IncidentService(db)
    iid = svc.open(title, "SEV-2", "alice")["id"]
    svc.resolve(iid, "alice", resolution="restored")
    db.dispose()
    return iid


def test_smoke_passes_then_names_the_corrupt_model(model_repository, tmp_path):
    repo = model_repository(tmp_path / "models")
    db_url = f"sqlite:///{tmp_path / 'smoke.db'}"
    key = _admin_key(db_url)
    proc, url = start_server(repo, db_url, record_flush_interval_s=0.1)
    try:
        code, result = _smoke(url, key)
        assert code == 0, result
        assert set(_statuses(result).values()) == {"pass"} and len(result["checks"]) == 7
        human = runner.invoke(app, ["smoke", "--url", url, "--api-key", key])
        assert human.exit_code == 0 and human.stdout.splitlines()[0].startswith("PASS  live")
        assert f"smoke {url}: PASSED: 7 passed, 0 failed, 0 skipped" in human.stdout

        # the recovery of an incident is verified by a smoke run, attached to the timeline
        iid = _resolved_incident(db_url, "Corrupt model")
        close = ["incident", "close", str(iid), "--smoke-url", url, "--api-key", key, "--database-url", db_url]
        closed = runner.invoke(app, [*close, "--json"])
        assert closed.exit_code == 0, closed.output
        view = json.loads(closed.stdout)
        assert view["status"] == "closed" and [e["kind"] for e in view["timeline"][-2:]] == ["smoke", "closed"]
        assert view["timeline"][-2]["data"]["url"] == url

        # corrupt the only version of the required model and reload it
        weights = repo / "tiny" / "1" / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0xFF
        weights.write_bytes(bytes(data))
        loaded = httpx.post(
            f"{url}/v2/repository/models/tiny/load", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert loaded.json()["versions"][0]["state"] == "FAILED"

        code, result = _smoke(url, key)
        assert code == 1
        statuses = _statuses(result)
        assert result["failed"] == ["ready", "model:tiny"], statuses
        assert statuses["infer:tiny"] == "skip" and result["ok"] is False
        human = runner.invoke(app, ["smoke", "--url", url, "--api-key", key])
        assert human.exit_code == 1 and "FAIL  model:tiny" in human.stdout
        assert "FAILED (ready, model:tiny)" in human.stdout.splitlines()[-1]

        # and an incident does not close on a failing service
        iid = _resolved_incident(db_url, "Still broken")
        close = ["incident", "close", str(iid), "--smoke-url", url, "--api-key", key, "--database-url", db_url]
        refused = runner.invoke(app, close)
        assert refused.exit_code == 1 and "stays resolved" in refused.output
        db = Database(db_url)
        assert IncidentService(db).get(iid)["status"] == "resolved"
        db.dispose()
    finally:
        proc.kill()
        proc.wait()


def test_smoke_names_the_database_when_postgresql_stops(model_repository, tmp_path):
    from pg_cluster import PostgresCluster

    repo = model_repository(tmp_path / "models")
    cluster = PostgresCluster()
    proc = None
    try:
        db_url = cluster.create_database("smoke")
        key = _admin_key(db_url)
        proc, url = start_server(repo, db_url, record_flush_interval_s=0.1)
        code, result = _smoke(url, key)
        assert code == 0, result

        cluster.stop_server("fast")
        try:
            code, result = _smoke(url, key, "--record-wait", "2")
            assert code == 1
            statuses = _statuses(result)
            assert result["failed"] == ["database"], statuses
            assert statuses["infer:tiny"] == "pass"  # inference goes on; its records wait in the buffer
            assert "not readable" in result["checks"][-1]["detail"]
        finally:
            cluster.start_server()

        deadline = time.time() + 30
        while httpx.get(f"{url}/v2/health/ready", timeout=5).json()["database"] != "ok":
            assert time.time() < deadline, "the database did not recover"
            time.sleep(0.2)
        code, result = _smoke(url, key)
        assert code == 0, result
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        cluster.stop()
