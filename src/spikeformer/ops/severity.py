"""The one table of incident severities (SEV-1..SEV-4): meaning, response target, update cadence, alert routing.

Everything that speaks of severities takes it from here or is tested against it: the Prometheus rules
(`deploy/prometheus/rules.yml`: labels `sev` and `severity`), the Alertmanager routes (`sev` -> receiver), the
incident logic (acknowledgement and update targets) and the runbook's table (`docs/runbooks/incident-response.md`,
checked against `render_markdown_table()`).

Definitions, response times and examples are those of the organisation's incident-response runbook, which
`docs/runbooks/incident-response.md` adapts. Update intervals: that runbook promises an update "every 30 minutes"
in its initial incident report, which is right for the incidents that page (SEV-1, SEV-2). For SEV-3 and SEV-4 an
update every 30 minutes would be noise, and an interval shorter than the response target would make an incident's
update fall due before its acknowledgement does; so a SEV-3 incident is updated once per response window (4 h) and a
SEV-4 incident once a day (24 h).

This module imports nothing from spikeformer (it sits below `store`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Severity", "SEVERITIES", "get_severity", "escalate", "render_markdown_table"]

AlertSeverity = Literal["critical", "warning", "info"]
Routing = Literal["page", "ticket", "log"]


@dataclass(frozen=True)
class Severity:
    """One severity level.

    Attributes:
        level: 1 (most severe) to 4.
        name: ``"SEV-1"`` .. ``"SEV-4"``: the value of the ``sev`` label of alerts and of incidents.
        title: ``"Critical"``, ``"High"``, ``"Medium"``, ``"Low"``.
        definition: what an incident of this level is.
        response_minutes: acknowledgement target, minutes from detection.
        update_interval_minutes: how often an open incident's status is updated, minutes.
        alert_severity: the ``severity`` label of alert rules of this level (``critical``, ``warning``, ``info``).
        routing: what Alertmanager does with it: ``page`` (wake someone), ``ticket`` (next working hours) or ``log``.
        examples: typical incidents of this level.
    """

    level: int
    name: str
    title: str
    definition: str
    response_minutes: int
    update_interval_minutes: int
    alert_severity: AlertSeverity
    routing: Routing
    examples: tuple[str, ...]

    @property
    def response_time(self) -> dt.timedelta:
        """The acknowledgement target as a timedelta."""
        return dt.timedelta(minutes=self.response_minutes)

    @property
    def update_interval(self) -> dt.timedelta:
        """The update cadence as a timedelta."""
        return dt.timedelta(minutes=self.update_interval_minutes)

    def __str__(self) -> str:
        return self.name


SEVERITIES: tuple[Severity, ...] = (
    Severity(
        level=1,
        name="SEV-1",
        title="Critical",
        definition="Complete service outage or data loss",
        response_minutes=15,
        update_interval_minutes=30,
        alert_severity="critical",
        routing="page",
        examples=(
            "All model inference endpoints down",
            "Hardware systems completely unavailable",
            "Data corruption or loss",
        ),
    ),
    Severity(
        level=2,
        name="SEV-2",
        title="High",
        definition="Major functionality impaired",
        response_minutes=60,
        update_interval_minutes=30,
        alert_severity="critical",
        routing="page",
        examples=(
            "Single hardware backend unavailable",
            "Significant performance degradation (>50% slower)",
            "Security vulnerability in production",
        ),
    ),
    Severity(
        level=3,
        name="SEV-3",
        title="Medium",
        definition="Minor functionality impaired",
        response_minutes=240,
        update_interval_minutes=240,
        alert_severity="warning",
        routing="ticket",
        examples=(
            "Non-critical features unavailable",
            "Moderate performance impact",
            "Documentation or UI issues",
        ),
    ),
    Severity(
        level=4,
        name="SEV-4",
        title="Low",
        definition="Cosmetic or enhancement",
        response_minutes=1440,
        update_interval_minutes=1440,
        alert_severity="info",
        routing="log",
        examples=(
            "Minor UI inconsistencies",
            "Enhancement requests",
            "Non-urgent improvements",
        ),
    ),
)

_BY_LEVEL = {s.level: s for s in SEVERITIES}
_PATTERN = re.compile(r"^(?:SEV)?[-_ ]?([0-9]+)$")
_ACCEPTED = ", ".join(s.name for s in SEVERITIES) + " (also 1..4, 'sev1'..'sev4')"


def get_severity(value: Severity | str | int) -> Severity:
    """The severity named by ``value``: ``"SEV-2"``, ``"sev2"``, ``"SEV 2"``, ``2`` or a `Severity` itself.

    Raises:
        ValueError: ``value`` names no severity; the message lists the accepted values.
    """
    if isinstance(value, Severity):
        return value
    level: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        level = value
    elif isinstance(value, str):
        m = _PATTERN.match(value.strip().upper())
        level = int(m.group(1)) if m else None
    if level not in _BY_LEVEL:
        raise ValueError(f"unknown severity {value!r}: expected one of {_ACCEPTED}")
    return _BY_LEVEL[level]


def escalate(a: Severity | str | int, b: Severity | str | int) -> Severity:
    """The more severe of two severities (the lower level number): ``escalate("SEV-3", 2)`` is SEV-2."""
    sa, sb = get_severity(a), get_severity(b)
    return sa if sa.level <= sb.level else sb


def _duration(minutes: int) -> str:
    return f"{minutes} min" if minutes < 60 or minutes % 60 else f"{minutes // 60} h"


def render_markdown_table() -> str:
    """The severity table as GitHub Markdown (the runbook's copy must equal it; a test checks that).

    Returns:
        The table's lines joined by newlines, with no trailing newline.
    """
    lines = [
        "| Severity | Title | Definition | Response | Updates | Alert `severity` | Routing | Examples |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in SEVERITIES:
        lines.append(
            f"| {s.name} | {s.title} | {s.definition} | {_duration(s.response_minutes)} "
            f"| every {_duration(s.update_interval_minutes)} | {s.alert_severity} | {s.routing} "
            f"| {'; '.join(s.examples)} |"
        )
    return "\n".join(lines)
