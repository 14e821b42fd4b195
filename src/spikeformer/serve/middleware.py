"""ASGI middleware of the service: the body size limit and admission control for inference requests.

Both answer before the application reads a request's body, with the service's error body ``{"error": "..."}``.
``create_app`` installs them (``BodySizeLimit`` innermost, ``InflightLimit`` outermost).
"""

from __future__ import annotations

import json
from typing import Any

from spikeformer.serve import metrics

__all__ = ["BodySizeLimit", "InflightLimit"]

Scope = dict[str, Any]


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes (by Content-Length, or counted while streaming).

    Args:
        app: The ASGI application it wraps.
        limit: The largest body accepted, in bytes.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_json(
                send, 413, {"error": f"request body is {int(length)} bytes; the limit is {self.limit}"}
            )
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            return await self.app(scope, limited_receive, send)
        except _TooLarge:
            return await _send_json(send, 413, {"error": f"request body exceeds the limit of {self.limit} bytes"})


class _TooLarge(Exception):
    pass


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
    (docs/benchmarks.md). This answers 503 with ``Retry-After`` (and ``{"error": ...}``)
    before reading the body when ``limit`` inference requests are in flight (setting ``max_inflight``) or when the
    Open Inference Protocol request's model has a full queue (``InferenceService.queue_full``; counted in
    ``spikeformer_requests_total`` as ``rejected``, not recorded in the database). Metric
    ``spikeformer_admission_rejected_total{reason}``. Health, metrics and admin paths are never limited.

    Args:
        app: The ASGI application it wraps.
        limit: Inference requests admitted at once.
        retry_after_s: The ``Retry-After`` of a rejection, in seconds.
    """

    def __init__(self, app: Any, limit: int, retry_after_s: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_s).encode()
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _is_inference(scope.get("path", "")):
            return await self.app(scope, receive, send)
        if self.inflight >= self.limit:
            metrics.ADMISSION_REJECTED.labels("inflight").inc()
            overloaded = f"{self.inflight} inference requests in flight (limit {self.limit})"
            return await self._reject(send, f"server overloaded: {overloaded}; retry later")
        target = _oip_model(scope.get("path", ""))
        svc = getattr(getattr(scope.get("app"), "state", None), "svc", None)
        if target is not None and svc is not None and (reason := svc.inference.queue_full(*target)):
            metrics.ADMISSION_REJECTED.labels("queue_full").inc()
            return await self._reject(send, reason)
        self.inflight += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.inflight -= 1

    async def _reject(self, send: Any, reason: str) -> None:
        data = json.dumps({"error": reason}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"retry-after", self.retry_after),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})
