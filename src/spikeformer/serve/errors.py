"""Errors the service turns into HTTP answers ``{"error": "..."}`` (the Open Inference Protocol's error body)."""

from __future__ import annotations

__all__ = [
    "ServiceError",
    "bad_request",
    "not_found",
    "unavailable",
    "timeout",
    "too_large",
    "unauthorized",
    "forbidden",
]


class ServiceError(Exception):
    """An HTTP status, a message for the client, and optional headers (``Retry-After``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, kind: str = "error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.kind = kind


def bad_request(message: str) -> ServiceError:
    return ServiceError(400, message, kind="bad_request")


def not_found(message: str) -> ServiceError:
    return ServiceError(404, message, kind="not_found")


def unavailable(message: str, retry_after: int = 1) -> ServiceError:
    return ServiceError(503, message, {"Retry-After": str(retry_after)}, kind="unavailable")


def timeout(message: str) -> ServiceError:
    return ServiceError(504, message, kind="timeout")


def too_large(message: str) -> ServiceError:
    return ServiceError(413, message, kind="too_large")


def unauthorized(message: str) -> ServiceError:
    return ServiceError(401, message, {"WWW-Authenticate": "Bearer"}, kind="unauthorized")


def forbidden(message: str) -> ServiceError:
    return ServiceError(403, message, kind="forbidden")
