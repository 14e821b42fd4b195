"""InflightLimit: inference beyond the limit is answered 503 + Retry-After before its body is read."""

import asyncio
import json

from spikeformer.serve.middleware import InflightLimit


def _scope(path: str) -> dict:
    return {"type": "http", "path": path, "method": "POST", "headers": []}


async def _call(limited: InflightLimit, path: str, **scope) -> tuple[int, dict, bytes]:
    """One request through the middleware: (status, headers, body); reading a body fails the test."""
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        raise AssertionError("a rejected request's body must not be read")

    await limited({**_scope(path), **scope}, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


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
    assert asked == [("busy", None), ("busy", "2"), ("idle", None)]
    assert metrics.ADMISSION_REJECTED.labels("queue_full")._value.get() == before + 2
