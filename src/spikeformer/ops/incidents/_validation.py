"""Argument checks shared by the incident operations: each returns the clean value or raises `IncidentInputError`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spikeformer.ops.incidents.errors import IncidentInputError
from spikeformer.ops.severity import Severity, get_severity
from spikeformer.store import ACTIVE_STATUSES, EVENT_VISIBILITIES, INCIDENT_STATUSES

__all__ = [
    "NAME_MAX",
    "TEXT_MAX",
    "TIME_RANGE",
    "TITLE_MAX",
    "author",
    "aware",
    "severity",
    "statuses",
    "text",
    "visibility",
]

TITLE_MAX = 200
NAME_MAX = 200  # authors, commanders
TEXT_MAX = 20_000
TIME_RANGE = timedelta(days=366)  # times given by callers (start, ETA, meeting) lie within a year of now


def text(value: str | None, what: str, required: bool = False, limit: int = TEXT_MAX) -> str:
    """`value` stripped (None reads as empty).

    Raises:
        IncidentInputError: not a string, a NUL character, empty when `required`, or longer than `limit`.
    """
    if value is not None and not isinstance(value, str):
        raise IncidentInputError(f"{what} must be text, got {type(value).__name__}")
    clean = (value or "").strip()
    if "\x00" in clean:
        raise IncidentInputError(f"{what} must not contain NUL characters")
    if required and not clean:
        raise IncidentInputError(f"{what} must not be empty")
    if len(clean) > limit:
        raise IncidentInputError(f"{what} is {len(clean)} characters long; at most {limit} are accepted")
    return clean


def author(value: str | None) -> str:
    """Who makes a change: required, at most `NAME_MAX` characters."""
    return text(value, "author (who makes the change)", required=True, limit=NAME_MAX)


def severity(value: Severity | str | int) -> Severity:
    """`SEV-1` .. `SEV-4` (or 1..4, or a `Severity`) from the severity table."""
    try:
        return get_severity(value)
    except ValueError as e:
        raise IncidentInputError(str(e)) from None


def visibility(value: str) -> str:
    """`public` or `internal`."""
    if value not in EVENT_VISIBILITIES:
        raise IncidentInputError(f"unknown visibility {value!r}: accepted {', '.join(EVENT_VISIBILITIES)}")
    return value


def aware(value: datetime | None, what: str, now: datetime) -> datetime | None:
    """`value` in UTC (None stays None).

    Raises:
        IncidentInputError: `value` is naive, or more than `TIME_RANGE` away from `now`.
    """
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise IncidentInputError(f"{what} has no time zone: give e.g. 2025-01-01T12:00:00Z")
    value = value.astimezone(UTC)
    if abs(value - now) > TIME_RANGE:
        raise IncidentInputError(
            f"{what} {value.isoformat()} is more than {TIME_RANGE.days} days from now ({now.isoformat()})"
        )
    return value


def statuses(values: list[str] | None) -> list[str] | None:
    """Incident statuses to list: `active` stands for open, acknowledged and mitigated; None or empty for all."""
    if not values:
        return None
    wanted: list[str] = []
    for status in values:
        if status == "active":
            wanted += ACTIVE_STATUSES
        elif status in INCIDENT_STATUSES:
            wanted.append(status)
        else:
            accepted = ", ".join(("active", *INCIDENT_STATUSES))
            raise IncidentInputError(f"unknown incident status {status!r}: accepted {accepted}")
    return wanted
