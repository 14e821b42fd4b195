"""InflightLimit: inference beyond the limit is answered 503 + Retry-After before its body is read; a request counts
against the limit only once its body is complete, and bodies still arriving have a cap of their own."""

import asyncio
import json

import pytest

from spikeformer.serve import metrics
from spikeformer.serve.middleware import InflightLimit
from support import echo_app


def _scope(path: str) -> dict:
    return {"type": "http", "path": path, "method": "POST", "headers": []}


async def _call(limited: InflightLimit, path: str, **scope) -> tuple[int, dict, bytes]:
    """One request with a complete body ``{}`` through the middleware: (status, headers, body); a 503 that read the
    body fails the test."""
    sent: list[dict] = []
    read: list[bool] = []

    async def send(message):
        sent.append(message)

    async def receive():
        if read:
            return {"type": "http.disconnect"}
        read.append(True)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    await limited({**_scope(path), **scope}, receive, send)
    assert not (sent[0]["status"] == 503 and read), "a rejected request's body must not be read"
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


class _SlowBody:
    """A request whose body arrives in two parts: ``first`` at once, the rest when ``rest`` is set."""

    def __init__(self) -> None:
        self.rest = asyncio.Event()
        self.sent: list[dict] = []
        self.parts = [{"type": "http.request", "body": b'{"in', "more_body": True}]

    async def receive(self) -> dict:
        if self.parts:
            return self.parts.pop(0)
        await self.rest.wait()
        self.rest.clear()
        return {"type": "http.request", "body": b'puts": []}', "more_body": False}

    async def send(self, message: dict) -> None:
        self.sent.append(message)


def test_requests_beyond_the_limit_get_503_with_retry_after_and_others_pass():
    release = asyncio.Event()
    served: list[str] = []

    async def app(scope, receive, send):
        served.append(scope["path"])
        if scope["path"].endswith("/infer"):
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    limited = InflightLimit(app, limit=2, retry_after_s=3)

    def call(path: str):
        return _call(limited, path)

    async def scenario():
        first = [asyncio.create_task(call("/v2/models/m/infer")) for _ in range(2)]
        await asyncio.sleep(0)  # both admitted and waiting inside the app
        assert limited.inflight == 2
        status, headers, body = await call("/v1/classify")
        assert status == 503 and headers[b"retry-after"] == b"3"
        assert "limit 2" in json.loads(body)["error"]
        assert (await call("/v2/health/ready"))[0] == 200  # never limited
        release.set()
        assert [(await t)[0] for t in first] == [200, 200]
        assert limited.inflight == 0
        assert (await call("/v2/models/m/infer"))[0] == 200  # admitted again once the others finished

    asyncio.run(scenario())
    assert served.count("/v2/models/m/infer") == 3 and "/v1/classify" not in served


def test_a_full_model_queue_is_answered_503_before_the_body_is_read():
    """Under overload most requests find their model's queue full: they are turned away before their body is read and
    parsed (which would cost the event loop as much as answering them), with the queue's own message."""
    from types import SimpleNamespace

    from spikeformer.serve import metrics

    full = {("busy", None), ("busy", "2")}
    asked: list[tuple[str, str | None]] = []

    def queue_full(name, version):
        asked.append((name, version))
        return f"the queue of {name} is full (4 requests); retry later" if (name, version) in full else None

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    limited = InflightLimit(app, limit=100, retry_after_s=2)
    state = SimpleNamespace(svc=SimpleNamespace(inference=SimpleNamespace(queue_full=queue_full)))
    before = metrics.ADMISSION_REJECTED.labels("queue_full")._value.get()

    def call(path: str):
        return _call(limited, path, app=SimpleNamespace(state=state))

    status, headers, body = asyncio.run(call("/v2/models/busy/infer"))
    assert status == 503 and headers[b"retry-after"] == b"2" and "queue of busy is full" in json.loads(body)["error"]
    assert asyncio.run(call("/v2/models/busy/versions/2/infer"))[0] == 503
    assert asyncio.run(call("/v2/models/idle/infer"))[0] == 200
    assert asyncio.run(call("/v1/classify"))[0] == 200  # its model comes with the form: the endpoint decides
    # an admitted request is asked twice: before its body is read and once it is complete
    assert asked == [("busy", None), ("busy", "2"), ("idle", None), ("idle", None)]
    assert metrics.ADMISSION_REJECTED.labels("queue_full")._value.get() == before + 2


@pytest.mark.security
def test_a_request_counts_against_the_limit_only_once_its_body_is_complete():
    """A client sending its body slowly holds no admission slot: others are served meanwhile, and it is admitted (or
    refused, when the limit filled up in the meantime) only once its body is here."""
    release = asyncio.Event()

    async def app(scope, receive, send):
        if scope["path"] == "/v2/models/hold/infer":
            await release.wait()
        await echo_app(scope, receive, send)

    limited = InflightLimit(app, limit=1, retry_after_s=1)

    async def scenario():
        slow = _SlowBody()
        task = asyncio.create_task(limited(_scope("/v2/models/m/infer"), slow.receive, slow.send))
        await asyncio.sleep(0.01)
        assert limited.inflight == 0
        for _ in range(3):  # the slow body holds no admission slot
            assert (await _call(limited, "/v2/models/m/infer"))[0] == 200
        assert limited.partial == 1
        slow.rest.set()
        await task
        assert slow.sent[0]["status"] == 200 and slow.sent[1]["body"] == b'{"inputs": []}'
        # the limit is asked again when the body is complete: full by then, the request is refused
        late = _SlowBody()
        task = asyncio.create_task(limited(_scope("/v2/models/m/infer"), late.receive, late.send))
        await asyncio.sleep(0.01)
        holder = asyncio.create_task(_call(limited, "/v2/models/hold/infer"))
        await asyncio.sleep(0.01)
        assert limited.inflight == 1
        late.rest.set()
        await task
        assert late.sent[0]["status"] == 503 and "limit 1" in json.loads(late.sent[1]["body"])["error"]
        release.set()
        assert (await holder)[0] == 200
        assert (limited.partial, limited.inflight) == (0, 0)

    asyncio.run(scenario())


@pytest.mark.security
def test_bodies_still_arriving_beyond_their_cap_get_503_and_complete_bodies_pass():
    limited = InflightLimit(echo_app, limit=100, retry_after_s=2, max_partial=2)
    rejected = metrics.ADMISSION_REJECTED.labels("partial_bodies")._value.get()

    async def scenario():
        slow = [_SlowBody() for _ in range(3)]
        tasks = []
        for request in slow[:2]:
            tasks.append(asyncio.create_task(limited(_scope("/v1/classify"), request.receive, request.send)))
            await asyncio.sleep(0.01)
        assert limited.partial == 2 and metrics.PARTIAL_BODIES._value.get() >= 2
        await limited(_scope("/v2/models/m/infer"), slow[2].receive, slow[2].send)  # a third one: over the cap
        start, body = slow[2].sent
        headers = dict(start["headers"])
        assert start["status"] == 503 and headers[b"retry-after"] == b"2" and headers[b"connection"] == b"close"
        error = json.loads(body["body"])["error"]
        assert "2 requests are still sending their bodies (limit 2, setting max_partial_bodies)" in error
        assert (await _call(limited, "/v2/models/m/infer"))[0] == 200  # a body that came whole needs no slot
        for request in slow[:2]:
            request.rest.set()
        await asyncio.gather(*tasks)
        assert [request.sent[0]["status"] for request in slow[:2]] == [200, 200]
        assert limited.partial == 0

    asyncio.run(scenario())
    assert metrics.ADMISSION_REJECTED.labels("partial_bodies")._value.get() == rejected + 1
