"""Fixtures for the incident tests: a migrated SQLite database, a clock the test moves, a chat receiver on loopback,
a real Alertmanager process, and a service (TestClient) with API keys.

Alertmanager is the Debian package `prometheus-alertmanager`; if it is missing the fixture fails with the command
that installs it (the tests do not skip).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from spikeformer.ops.incidents import IncidentService
from spikeformer.serve.app import create_app
from spikeformer.store import ApiKeyStore, Database
from support import free_port, make_repository, make_settings

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


class Clock:
    """A settable UTC clock: `clock()` is the current time, `clock.advance(minutes=5)` moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def db(tmp_path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'incidents.db'}")
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def svc(db, clock) -> IncidentService:
    return IncidentService(db, clock=clock)


class ChatReceiver:
    """A Slack-compatible webhook on loopback that records what is posted; `status` is what it answers."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.messages.append(json.loads(body))
                self.send_response(receiver.status)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if receiver.status == 200 else b"invalid_token")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/incidents"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat() -> Iterator[ChatReceiver]:
    receiver = ChatReceiver()
    yield receiver
    receiver.close()


class Alertmanager:
    """A real Alertmanager on a free loopback port (clustering off, storage in a temporary folder)."""

    def __init__(
        self, folder: Path, receiver_url: str | None = None, bearer: str | None = None, port: int | None = None
    ) -> None:
        if not Path(ALERTMANAGER).exists():
            pytest.fail(
                f"{ALERTMANAGER} is missing: install it with `apt-get install -y prometheus-alertmanager` "
                "(or `make test-deps`)"
            )
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "alertmanager.yml"
        config.write_text(_config(receiver_url, bearer))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "alertmanager.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={config}",
                f"--storage.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"Alertmanager did not start: {(folder / 'alertmanager.log').read_text()[-2000:]}")

    def silences(self) -> list[dict]:
        return httpx.get(f"{self.url}/api/v2/silences", timeout=5).json()

    def post_alerts(self, alerts: list[dict]) -> None:
        httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _config(receiver_url: str | None, bearer: str | None) -> str:
    if receiver_url is None:
        return 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n'
    return (
        "route:\n"
        '  receiver: "incidents"\n'
        '  group_by: ["alertname"]\n'
        "  group_wait: 0s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        '  - name: "incidents"\n'
        "    webhook_configs:\n"
        f'      - url: "{receiver_url}"\n'
        "        send_resolved: true\n"
        "        http_config:\n"
        "          authorization:\n"
        f'            credentials: "{bearer}"\n'
    )


@pytest.fixture
def alertmanager(tmp_path) -> Iterator[Alertmanager]:
    """A real Alertmanager with no receivers (for silences)."""
    am = Alertmanager(tmp_path / "alertmanager")
    yield am
    am.stop()


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    return make_repository(tmp_path_factory.mktemp("models"))


class Service:
    """A TestClient over the service with an admin, an alerts and an infer key."""

    def __init__(self, client: TestClient, db_url: str) -> None:
        self.client = client
        with Database(db_url).session() as s:
            keys = ApiKeyStore(s)
            self.admin, _ = keys.create("ops", ["admin"])
            self.alerts, _ = keys.create("alertmanager", ["alerts"])
            self.infer, _ = keys.create("app", ["infer"])

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def post(self, path: str, json: dict | None = None, key: str | None = "admin", **kw) -> httpx.Response:
        headers = self.headers(getattr(self, key)) if key else {}
        return self.client.post(path, json=json, headers=headers, **kw)

    def get(self, path: str, key: str | None = None, **kw) -> httpx.Response:
        headers = self.headers(getattr(self, key)) if key else {}
        return self.client.get(path, headers=headers, **kw)


@pytest.fixture
def service(repository, tmp_path) -> Iterator[Service]:
    db_url = f"sqlite:///{tmp_path / 'svc.db'}"
    settings = make_settings(repository, db_url)
    with TestClient(create_app(settings)) as client:
        yield Service(client, db_url)


# When the alerts of the tests started: shortly before the tests, written as Go writes it (nanoseconds).
_STARTS_AT = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def webhook_payload(
    group: str = "SpikeformerHighErrorRate",
    alerts: list[dict] | None = None,
    status: str = "firing",
    receiver: str = "incidents",
) -> dict:
    """An Alertmanager webhook body (version 4) for one alert group."""
    alerts = alerts if alerts is not None else [alert()]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{group}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": group},
        "commonLabels": {"alertname": group},
        "commonAnnotations": {"summary": f"{group} fires", "description": "Inference requests fail."},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    }


def alert(
    fingerprint: str = "a1",
    sev: str | None = "SEV-2",
    status: str = "firing",
    name: str = "SpikeformerHighErrorRate",
    starts_at: str | None = None,
    instance: str = "api-0",
) -> dict:
    """One alert of a webhook body."""
    starts_at = starts_at or _STARTS_AT
    labels = {"alertname": name, "instance": instance, "service": "spikeformer-api"}
    if sev is not None:
        labels["sev"] = sev
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{name} on {instance}"},
        "startsAt": starts_at,
        "endsAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph",
        "fingerprint": fingerprint,
    }


class Payloads:
    """The payload helpers as a fixture (conftest modules cannot be imported under --import-mode=importlib)."""

    payload = staticmethod(webhook_payload)
    alert = staticmethod(alert)


@pytest.fixture
def am() -> type[Payloads]:
    """`am.payload(group, alerts, status)` and `am.alert(fingerprint, sev, status, ...)`."""
    return Payloads


@pytest.fixture
def start_alertmanager(tmp_path):
    """`start_alertmanager(receiver_url=None, bearer=None, port=None)` -> a running `Alertmanager`, stopped after."""
    started: list[Alertmanager] = []

    def start(receiver_url: str | None = None, bearer: str | None = None, port: int | None = None) -> Alertmanager:
        am = Alertmanager(tmp_path / f"alertmanager-{len(started)}", receiver_url, bearer, port)
        started.append(am)
        return am

    yield start
    for am in started:
        am.stop()


@pytest.fixture(scope="module")
def pg_cluster_url() -> Iterator[str]:
    """A migrated database on a private PostgreSQL server (fails, never skips, when PostgreSQL is missing)."""
    from pg_cluster import PostgresCluster

    cluster = PostgresCluster()
    try:
        url = cluster.create_database("incidents")
        database = Database(url)
        database.upgrade()
        database.dispose()
        yield url
    finally:
        cluster.stop()
