"""ASGI middleware of the service: the body guard (size limit, read deadline) and admission control for inference.

Both answer with the service's error body ``{"error": "..."}``. ``create_app`` installs ``BodySizeLimit`` outermost,
so that its limit and its deadline also bound the bodies ``InflightLimit`` reads before it admits a request.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.exceptions import HTTPException

from spikeformer.serve import metrics

__all__ = ["BodySizeLimit", "InflightLimit"]

Scope = dict[str, Any]


class _BodyRefused(HTTPException):
    """A body the guard refuses: over the size limit (413) or not arrived in time (408).

    An ``HTTPException``, because FastAPI answers any other exception raised while it parses a body with 400 ("There
    was an error parsing the body") but hands an ``HTTPException`` on to the service's error handler.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message, headers={"connection": "close"})


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, 408 for a body that does not arrive in time.

    The size is checked on the ``Content-Length`` before anything is read, and counted while the body streams (a
    chunked body has no ``Content-Length``). The whole body must arrive within ``read_timeout_s`` seconds of the
    request reaching the middleware (setting ``body_read_timeout_s``); a client that sends it slower is answered 408
    and counted in ``spikeformer_body_read_timeouts_total``. Both refusals close the connection (the rest of the body
    is never read) and are answered whatever the application made of the failed read: FastAPI would turn it into 400.

    Args:
        app: The ASGI application it wraps.
        limit: The largest body accepted, in bytes (setting ``max_body_bytes``).
        read_timeout_s: Seconds the whole body may take to arrive; ``None``: no deadline.
    """

    def __init__(self, app: Any, limit: int, read_timeout_s: float | None = None) -> None:
        self.app = app
        self.limit = limit
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_json(
                send, 413, {"error": f"request body is {int(length)} bytes; the limit is {self.limit}"}
            )
        loop = asyncio.get_running_loop()
        deadline = None if self.read_timeout_s is None else loop.time() + self.read_timeout_s
        seen = 0
        complete = False
        refused: _BodyRefused | None = None
        started = replaced = False

        async def guarded_receive() -> dict[str, Any]:
            nonlocal seen, complete, refused
            if refused is not None:
                raise refused
            if complete or deadline is None:
                message = await receive()  # after the body: waiting for a disconnect has no deadline
            else:
                try:
                    async with asyncio.timeout(deadline - loop.time()):
                        message = await receive()
                except TimeoutError:
                    metrics.BODY_READ_TIMEOUTS.inc()
                    refused = _BodyRefused(
                        408,
                        f"the request body did not arrive within {self.read_timeout_s:g} s (setting "
                        "body_read_timeout_s); send the whole body without pauses",
                    )
                    raise refused from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = _BodyRefused(
                        413, f"request body exceeds the limit of {self.limit} bytes (setting max_body_bytes)"
                    )
                    raise refused
                complete = not message.get("more_body", False)
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                if refused is not None and message["status"] != refused.status_code:
                    replaced = True  # the application answered the failed read its own way (FastAPI: 400)
                    return await self._refuse(send, refused)
                started = True
            elif replaced and message["type"] == "http.response.body":
                return None
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except _BodyRefused as e:
            if not (started or replaced):
                await self._refuse(send, e)
            return None
        if refused is not None and not (started or replaced):
            await self._refuse(send, refused)  # the application swallowed the refusal and answered nothing
        return None

    @staticmethod
    async def _refuse(send: Any, refused: _BodyRefused) -> None:
        await _send_json(send, refused.status_code, {"error": refused.detail}, close=True)


def _is_inference(path: str) -> bool:
    return path == "/v1/classify" or (path.startswith("/v2/models/") and path.endswith("/infer"))


def _oip_model(path: str) -> tuple[str, str | None] | None:
    """``(name, version)`` of ``/v2/models/{name}[/versions/{version}]/infer``, else ``None``."""
    parts = path.split("/")
    if len(parts) == 5 and parts[:3] == ["", "v2", "models"] and parts[4] == "infer":
        return parts[3], None
    if len(parts) == 7 and parts[:3] == ["", "v2", "models"] and parts[4] == "versions" and parts[6] == "infer":
        return parts[3], parts[5]
    return None


class InflightLimit:
    """ASGI middleware: admission control for inference requests.

    The bounded model queue answers 503 only once a request's body has been read and parsed; under heavy overload
    that reading and parsing alone can occupy the event loop and cut the answered requests well below capacity
    (docs/benchmarks.md). This answers 503 with ``Retry-After`` (and ``{"error": ...}``) before reading the body when
    ``limit`` inference requests are in flight (setting ``max_inflight``) or when the Open Inference Protocol
    request's model has a full queue (``InferenceService.queue_full``; counted in ``spikeformer_requests_total`` as
    ``rejected``, not recorded in the database), and asks both again once the body is complete.

    A request counts against ``limit`` only once its whole body is here: the middleware reads it first, so that
    clients sending their bodies slowly cannot hold the admission slots of everyone else. A body that does not come
    complete with the request's first message takes one of ``max_partial`` slots of its own (setting
    ``max_partial_bodies``, gauge ``spikeformer_partial_bodies``) while the rest arrives; beyond them the request is
    answered 503 at once. How long a body may take is ``BodySizeLimit``'s read deadline, which wraps this. Metric
    ``spikeformer_admission_rejected_total{reason}`` (``inflight``, ``queue_full``, ``partial_bodies``). Health,
    metrics and admin paths are never limited.

    Args:
        app: The ASGI application it wraps.
        limit: Inference requests admitted at once.
        retry_after_s: The ``Retry-After`` of a rejection, in seconds.
        max_partial: Inference requests whose body is still arriving at once; ``None``: no cap.
    """

    def __init__(self, app: Any, limit: int, retry_after_s: int = 1, max_partial: int | None = None) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_s).encode()
        self.max_partial = max_partial
        self.inflight = 0
        self.partial = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _is_inference(scope.get("path", "")):
            return await self.app(scope, receive, send)
        if (reason := self._refusal(scope)) is not None:
            return await self._reject(send, reason)
        first = await receive()
        if first["type"] != "http.request":
            return None  # the client went away before sending its body
        body = first.get("body", b"")
        if first.get("more_body", False):
            if self.max_partial is not None and self.partial >= self.max_partial:
                metrics.ADMISSION_REJECTED.labels("partial_bodies").inc()
                busy = f"{self.partial} requests are still sending their bodies (limit {self.max_partial}, setting "
                return await self._reject(
                    send, busy + "max_partial_bodies); send the whole body at once or retry later", close=True
                )
            body = await self._rest_of_body(body, receive)
            if body is None:
                return None
        if (reason := self._refusal(scope)) is not None:
            return await self._reject(send, reason)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        self.inflight += 1
        try:
            return await self.app(scope, replay, send)
        finally:
            self.inflight -= 1

    def _refusal(self, scope: Scope) -> str | None:
        """Why the request cannot be admitted now (counted), or ``None``."""
        if self.inflight >= self.limit:
            metrics.ADMISSION_REJECTED.labels("inflight").inc()
            return f"server overloaded: {self.inflight} inference requests in flight (limit {self.limit}); retry later"
        target = _oip_model(scope.get("path", ""))
        svc = getattr(getattr(scope.get("app"), "state", None), "svc", None)
        if target is not None and svc is not None and (reason := svc.inference.queue_full(*target)):
            metrics.ADMISSION_REJECTED.labels("queue_full").inc()
            return reason
        return None

    async def _rest_of_body(self, first: bytes, receive: Any) -> bytes | None:
        """The whole body, holding a partial-body slot while it arrives; ``None`` when the client went away."""
        self.partial += 1
        metrics.PARTIAL_BODIES.inc()
        chunks = [first]
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return None
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    return b"".join(chunks)
        finally:
            self.partial -= 1
            metrics.PARTIAL_BODIES.dec()

    async def _reject(self, send: Any, reason: str, close: bool = False) -> None:
        await _send_json(send, 503, {"error": reason}, close=close, headers=((b"retry-after", self.retry_after),))


async def _send_json(
    send: Any,
    status: int,
    body: dict[str, Any],
    close: bool = False,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    data = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    if close:
        head.append((b"connection", b"close"))  # the rest of the body is never read
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})
