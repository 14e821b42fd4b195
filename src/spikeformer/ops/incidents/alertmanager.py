"""Alertmanager: reading its webhook payload (version 4) and creating silences through its v2 API.

Webhook payload (Alertmanager's `webhook_config`, body of the POST)::

    {"version": "4", "groupKey": "...", "truncatedAlerts": 0, "status": "firing|resolved", "receiver": "...",
     "groupLabels": {...}, "commonLabels": {...}, "commonAnnotations": {...}, "externalURL": "...",
     "alerts": [{"status": "firing|resolved", "labels": {...}, "annotations": {...}, "startsAt": "RFC 3339",
                 "endsAt": "RFC 3339", "generatorURL": "...", "fingerprint": "..."}]}

A firing alert's `endsAt` is Go's zero time (`0001-01-01T00:00:00Z`), read here as None.

Silences: `POST {alertmanager}/api/v2/silences` with `{"matchers": [{"name", "value", "isRegex", "isEqual"}],
"startsAt", "endsAt", "createdBy", "comment"}` answers `{"silenceID": "..."}`; `DELETE
{alertmanager}/api/v2/silence/{id}` expires one (the v1 API was removed in 0.27).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from spikeformer.ops.incidents.errors import IncidentInputError
from spikeformer.ops.severity import Severity, get_severity

__all__ = [
    "SEVERITY_LABEL_DEFAULTS",
    "AlertGroup",
    "WebhookAlert",
    "alert_severity",
    "create_silence",
    "expire_silence",
    "group_hash",
    "parse_webhook",
]

# An alert without a `sev` label is classified by its `severity` label: the least severe SEV that label is used for
# in spikeformer.ops.severity (critical -> SEV-2, warning -> SEV-3, info -> SEV-4); without either it is SEV-3.
SEVERITY_LABEL_DEFAULTS = {"critical": "SEV-2", "warning": "SEV-3", "info": "SEV-4"}
DEFAULT_SEV = "SEV-3"
_MAX_ALERTS = 1000


@dataclass(frozen=True)
class WebhookAlert:
    """One alert of a webhook payload."""

    status: str
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str | None

    @property
    def name(self) -> str:
        """The alert's `alertname` label (or its fingerprint)."""
        return self.labels.get("alertname") or self.fingerprint


@dataclass(frozen=True)
class AlertGroup:
    """A webhook payload: one Alertmanager alert group."""

    group_key: str
    status: str
    receiver: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    truncated_alerts: int
    alerts: list[WebhookAlert] = field(default_factory=list)

    @property
    def firing(self) -> list[WebhookAlert]:
        """The alerts that fire."""
        return [a for a in self.alerts if a.status == "firing"]


def group_hash(group_key: str) -> str:
    """The sha256 hex digest of a group key (keys can be long; the digest is what is indexed)."""
    return hashlib.sha256(group_key.encode("utf-8")).hexdigest()


def _time(value: Any, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise IncidentInputError(f"{where} must be an RFC 3339 time string, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Go writes up to nanoseconds; Python reads up to microseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise IncidentInputError(f"{where} is not an RFC 3339 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise IncidentInputError(f"{where} has no time zone: {value!r} (expected e.g. 2025-01-01T12:00:00Z)")
    if parsed.year <= 1:
        return None  # Go's zero time: a firing alert has no end yet
    return parsed.astimezone(UTC)


def _labels(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise IncidentInputError(f"{where} must be an object of string labels, got {type(value).__name__}")
    return {k: str(v) for k, v in value.items()}


def _string(value: Any, where: str, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise IncidentInputError(f"{where} must be a non-empty string" if required else f"{where} must be a string")
    return value


def parse_webhook(payload: Any) -> AlertGroup:
    """Validate an Alertmanager webhook payload (version 4) and read it.

    Raises:
        IncidentInputError: the payload is not a version 4 webhook body; the message names the field.
    """
    if not isinstance(payload, dict):
        raise IncidentInputError("the body must be an Alertmanager webhook payload (a JSON object, version 4)")
    if "\\u0000" in json.dumps(payload):
        raise IncidentInputError("the payload must not contain NUL characters")
    version = payload.get("version")
    if str(version) != "4":
        raise IncidentInputError(f"unsupported webhook payload version {version!r}: accepted '4' (Alertmanager)")
    group_key = _string(payload.get("groupKey"), "groupKey", required=True)
    status = payload.get("status")
    if status not in ("firing", "resolved"):
        raise IncidentInputError(f"status must be 'firing' or 'resolved', got {status!r}")
    raw_alerts = payload.get("alerts")
    if not isinstance(raw_alerts, list) or not raw_alerts:
        raise IncidentInputError("alerts must be a non-empty list of Alertmanager alerts")
    if len(raw_alerts) > _MAX_ALERTS:
        raise IncidentInputError(f"too many alerts ({len(raw_alerts)}); at most {_MAX_ALERTS} per payload")
    truncated = payload.get("truncatedAlerts", 0) or 0
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise IncidentInputError(f"truncatedAlerts must be a non-negative integer, got {truncated!r}")
    alerts = []
    for i, raw in enumerate(raw_alerts):
        where = f"alerts[{i}]"
        if not isinstance(raw, dict):
            raise IncidentInputError(f"{where} must be an object")
        a_status = raw.get("status")
        if a_status not in ("firing", "resolved"):
            raise IncidentInputError(f"{where}.status must be 'firing' or 'resolved', got {a_status!r}")
        labels = _labels(raw.get("labels"), f"{where}.labels")
        fingerprint = _string(raw.get("fingerprint"), f"{where}.fingerprint")
        if not fingerprint:
            # Older senders omit it: derive one from the labels, as Alertmanager does (stable per label set).
            fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
        if len(fingerprint) > 64:
            raise IncidentInputError(f"{where}.fingerprint is longer than 64 characters")
        alerts.append(
            WebhookAlert(
                status=a_status,
                fingerprint=fingerprint,
                labels=labels,
                annotations=_labels(raw.get("annotations"), f"{where}.annotations"),
                starts_at=_time(raw.get("startsAt"), f"{where}.startsAt"),
                ends_at=_time(raw.get("endsAt"), f"{where}.endsAt"),
                generator_url=_string(raw.get("generatorURL"), f"{where}.generatorURL") or None,
            )
        )
    return AlertGroup(
        group_key=group_key,
        status=status,
        receiver=_string(payload.get("receiver"), "receiver"),
        group_labels=_labels(payload.get("groupLabels"), "groupLabels"),
        common_labels=_labels(payload.get("commonLabels"), "commonLabels"),
        common_annotations=_labels(payload.get("commonAnnotations"), "commonAnnotations"),
        external_url=_string(payload.get("externalURL"), "externalURL"),
        truncated_alerts=truncated,
        alerts=alerts,
    )


def alert_severity(labels: dict[str, str]) -> tuple[Severity, str | None]:
    """The severity an alert asks for, and a problem with its labels (or None).

    The `sev` label (`SEV-1` .. `SEV-4`) decides; without it the `severity` label is mapped by
    `SEVERITY_LABEL_DEFAULTS`; without either, SEV-3. An unreadable `sev` label falls back the same way and the
    problem is returned so that the timeline can say so.
    """
    problem = None
    if "sev" in labels:
        try:
            return get_severity(labels["sev"]), None
        except ValueError as e:
            problem = f"alert {labels.get('alertname', '?')}: {e}"
    fallback = SEVERITY_LABEL_DEFAULTS.get(labels.get("severity", "").lower(), DEFAULT_SEV)
    return get_severity(fallback), problem


def create_silence(
    base_url: str,
    matchers: dict[str, str],
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
    comment: str,
    timeout_s: float = 5.0,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """Create an Alertmanager silence of every alert whose labels equal `matchers`; return its id.

    Raises:
        httpx.HTTPError: Alertmanager cannot be reached or answered an error status.
        ValueError: Alertmanager answered without a `silenceID`.
    """
    body = {
        "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in sorted(matchers.items())],
        "startsAt": starts_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "endsAt": ends_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "createdBy": created_by,
        "comment": comment,
    }
    with httpx.Client(timeout=timeout_s, transport=transport) as client:
        response = _checked(client.post(f"{base_url.rstrip('/')}/api/v2/silences", json=body))
        silence_id = response.json().get("silenceID")
    if not silence_id:
        raise ValueError(f"Alertmanager answered without a silenceID: {response.text[:300]}")
    return str(silence_id)


def expire_silence(
    base_url: str, silence_id: str, timeout_s: float = 5.0, transport: httpx.BaseTransport | None = None
) -> None:
    """Expire an Alertmanager silence (`DELETE /api/v2/silence/{id}`).

    Raises:
        httpx.HTTPError: Alertmanager cannot be reached or answered an error status.
    """
    with httpx.Client(timeout=timeout_s, transport=transport) as client:
        _checked(client.delete(f"{base_url.rstrip('/')}/api/v2/silence/{silence_id}"))


def _checked(response: httpx.Response) -> httpx.Response:
    """`response` if its status is below 400; else an `httpx.HTTPStatusError` naming the status and the body."""
    if response.status_code >= 400:
        raise httpx.HTTPStatusError(
            f"Alertmanager answered {response.status_code}: {response.text.strip()[:300]}",
            request=response.request,
            response=response,
        )
    return response
