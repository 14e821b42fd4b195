"""The body guard of the service: bodies over the limit get 413 however they are sent, slow bodies get 408 after the
read deadline, and slow clients neither count against ``max_inflight`` nor exceed their own cap."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from spikeformer.serve import metrics
from spikeformer.serve.app import create_app
from spikeformer.serve.middleware import BodySizeLimit
from support import echo_app, free_port, make_settings

pytestmark = pytest.mark.security


def _chunks(total: int, size: int = 1000):
    """A body of ``total`` bytes from a generator: httpx sends it chunked, with no Content-Length."""
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.fixture
def small_limit(repository, tmp_path):
    settings = make_settings(repository, f"sqlite:///{tmp_path / 'svc.db'}", max_body_bytes=2048)
    with TestClient(create_app(settings)) as client:
        yield client


def test_chunked_bodies_over_the_limit_get_413_on_classify_and_the_webhook(small_limit):
    multipart = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
        + b"x" * 10_000
        + b"\r\n--B--\r\n"
    )
    answers = {
        "/v1/classify": small_limit.post(
            "/v1/classify", content=iter([multipart]), headers={"content-type": "multipart/form-data; boundary=B"}
        ),
        "/v1/alertmanager/webhook": small_limit.post(
            "/v1/alertmanager/webhook", content=_chunks(10_000), headers={"content-type": "application/json"}
        ),
        "/v2/models/tiny/infer": small_limit.post("/v2/models/tiny/infer", content=_chunks(10_000)),
    }
    for path, answer in answers.items():
        assert answer.status_code == 413, (path, answer.text)
        assert "limit of 2048 bytes" in answer.json()["error"], path


async def _run(guard: BodySizeLimit, messages: list[dict | float]) -> list[dict]:
    """One request through ``guard``: ``messages`` are body messages, a float sleeps that long before the next; the
    messages the guard sent back."""
    sent: list[dict] = []
    pending = list(messages)

    async def receive():
        while pending and isinstance(pending[0], float):
            await asyncio.sleep(pending.pop(0))
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)  # the client never sends the rest

    async def send(message):
        sent.append(message)

    await guard({"type": "http", "path": "/v1/jobs", "method": "POST", "headers": []}, receive, send)
    return sent


def test_a_body_slower_than_the_read_deadline_gets_408_and_is_counted():
    guard = BodySizeLimit(echo_app, limit=1 << 20, read_timeout_s=0.2)
    before = metrics.BODY_READ_TIMEOUTS._value.get()
    started = time.monotonic()
    sent = asyncio.run(_run(guard, [{"type": "http.request", "body": b"{", "more_body": True}]))
    assert time.monotonic() - started < 2
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    error = json.loads(sent[1]["body"])["error"]
    assert "did not arrive within 0.2 s" in error and "body_read_timeout_s" in error
    assert metrics.BODY_READ_TIMEOUTS._value.get() == before + 1
    # a body that arrives in time, in pieces, passes; waiting for the client to go away afterwards has no deadline
    sent = asyncio.run(
        _run(
            guard,
            [
                {"type": "http.request", "body": b"a", "more_body": True},
                0.05,
                {"type": "http.request", "body": b"b", "more_body": False},
            ],
        )
    )
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"ab"
    assert metrics.BODY_READ_TIMEOUTS._value.get() == before + 1


def test_an_app_that_swallows_the_refusal_still_answers_413():
    """Whatever the application makes of the refused body (FastAPI turns parsing errors into 400), the client gets
    the limit's 413."""

    async def app(scope, receive, send):
        try:
            while (await receive()).get("more_body"):
                pass
        except Exception:  # noqa: BLE001 - what a careless body parser does
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b"There was an error parsing the body"})

    guard = BodySizeLimit(app, limit=1024, read_timeout_s=5)
    chunk = {"type": "http.request", "body": b"x" * 600, "more_body": True}
    sent = asyncio.run(_run(guard, [chunk, dict(chunk)]))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413 and "limit of 1024 bytes" in json.loads(sent[1]["body"])["error"]


# ---------------------------------------------------------------------------------------------- a real server


@pytest.fixture
def real_server(repository, tmp_path):
    """The service under uvicorn in a thread, on a loopback port: (url, port)."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**kw):
        settings = make_settings(repository, f"sqlite:///{tmp_path / 'real.db'}", **kw)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "the server did not start"
        return f"http://127.0.0.1:{port}", port

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def _slow_client(port: int) -> socket.socket:
    """An inference request whose headers promise 1000 body bytes, of which it sends 10 (and then nothing)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"inputs":'
    )
    return sock


def _answer(sock: socket.socket, timeout: float) -> tuple[int, dict]:
    """Status and JSON body of the response on ``sock``, waiting at most ``timeout`` seconds."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


def _infer_body() -> dict:
    imgs = np.zeros((1, 28, 28), dtype=np.uint8)
    return {"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "UINT8", "data": imgs.flatten().tolist()}]}


def test_slow_clients_cannot_starve_inference(real_server):
    """Slow clients fill neither ``max_inflight`` nor more than ``max_partial_bodies`` slots, and get 408 after the
    read deadline; meanwhile every other client is served."""
    url, port = real_server(max_inflight=2, max_partial_bodies=2, body_read_timeout_s=1.0)
    timeouts = metrics.BODY_READ_TIMEOUTS._value.get()
    slow = []
    for _ in range(2):
        slow.append(_slow_client(port))
        time.sleep(0.1)
    try:
        for _ in range(4):  # more probes than max_inflight, while two bodies are still arriving
            probe = httpx.post(f"{url}/v2/models/tiny/infer", json=_infer_body(), timeout=10)
            assert probe.status_code == 200, probe.text
        extra = _slow_client(port)  # a third partial body is beyond the cap
        status, body = _answer(extra, timeout=5)
        assert status == 503 and "max_partial_bodies" in body["error"], body
        extra.close()
        for sock in slow:
            status, body = _answer(sock, timeout=10)  # without a deadline no answer ever comes
            assert status == 408 and "body_read_timeout_s" in body["error"], body
        assert metrics.BODY_READ_TIMEOUTS._value.get() == timeouts + 2
        assert httpx.post(f"{url}/v2/models/tiny/infer", json=_infer_body(), timeout=10).status_code == 200
    finally:
        for sock in slow:
            sock.close()
