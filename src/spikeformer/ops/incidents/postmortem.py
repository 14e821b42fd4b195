"""The post-mortem draft of an incident, as Markdown.

The draft follows the runbook's post-mortem process (timeline of events, metrics, actions taken, impact assessment,
root cause analysis, action items with owners) and is due 48 hours after resolution. Impact is measured, not
estimated: the inference records of the incident window [start, resolution) (or until now for an incident still
open) are compared with the window of the same length just before it (at most 24 hours), from
`InferenceRecordStore.window_stats` (requests, failures, p50 / p99 latency of the successful ones) and the
failures by status (`error`, `timeout`, `rejected`). Once a window's raw records have passed their retention, its
figures come from the daily aggregates of the UTC days it touches (`InferenceRecordStore.daily_stats`: whole days,
latency percentiles to the histogram's bucket bounds, compared with as many days before them) and the draft says
so.

Text that comes from outside (alert names, labels and annotations, the alert group's key, titles, summaries, the
timeline's authors and messages) is neutralised before it enters the Markdown: `&`, `<` and `>` become HTML
entities (no raw HTML reaches a renderer), backslashes, backticks and square brackets are escaped (no links, images
or code spans), and on lines and in table cells line breaks are folded and `|` is escaped.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from spikeformer.ops.incidents.views import format_duration, targets
from spikeformer.ops.severity import get_severity
from spikeformer.store import Incident, IncidentAlert, IncidentEvent, InferenceRecordStore

__all__ = ["BASELINE_MAX", "impact_windows", "render_postmortem"]

# The window compared with the incident's is as long as the incident (at least a minute), at most this.
BASELINE_MAX = timedelta(hours=24)

# Labels every alert has that do not tell two alerts of a group apart.
_QUIET_LABELS = {"alertname", "sev", "severity", "service"}


def _t(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


# Characters that start Markdown constructs inline text must not open: code spans, links and images, escapes.
_MARKDOWN_ACTIVE = re.compile(r"([\\`\[\]])")


def _md(text: str | None) -> str:
    """Outside text made inert in Markdown: HTML-escaped, with backslashes, backticks and brackets escaped."""
    return _MARKDOWN_ACTIVE.sub(r"\\\1", html.escape(text or "", quote=False))


def _cell(text: str | None) -> str:
    """Outside text as one table cell (or one line): `_md`, on one line, `|` escaped."""
    return " ".join(_md(text).split()).replace("|", "\\|")


def _rate(stats: dict[str, Any]) -> str:
    return f"{100 * stats['errors'] / stats['total']:.2f} %" if stats["total"] else "-"


def _target(label: str, at: datetime | None, start: datetime, target_min: int | None) -> str:
    if at is None:
        return f"| {label} | not yet | - | - |"
    took = at - start
    verdict = "-"
    if target_min is not None:
        verdict = "met" if took.total_seconds() <= target_min * 60 else f"missed (target {target_min} min)"
    return f"| {label} | {_t(at)} | {format_duration(took)} | {verdict} |"


def impact_windows(
    records: InferenceRecordStore, incident: Incident, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The inference records of the incident window and of the window just before it (the baseline).

    Args:
        records: the inference records of the open transaction.
        incident: the incident; its window is [`started_at`, `resolved_at`), or until `now` while unresolved.
        now: the current time.

    Returns:
        `(window, baseline)`, each `{"start", "end", "source", **window_stats, "by_status": {status: count}}` as
        `render_postmortem` takes them; `source` is `"records"`, or `"daily"` once the raw records of the windows
        have passed their retention (whole UTC days from the daily aggregates).
    """
    start = incident.started_at
    end = incident.resolved_at or now
    length = min(max(end - start, timedelta(minutes=1)), BASELINE_MAX)
    complete_since = records.raw_complete_since()
    if complete_since is not None and start - length < complete_since:
        # The raw records are (partly) gone: whole UTC days from the aggregates, the days before as the baseline.
        first = start.astimezone(UTC).date()
        last = max(first, (end - timedelta(microseconds=1)).astimezone(UTC).date())
        days = last - first + timedelta(days=1)

        def daily(a: date, b: date) -> dict[str, Any]:
            return {"start": _midnight(a), "end": _midnight(b + timedelta(days=1)), "source": "daily"} | (
                records.daily_stats(a, b)
            )

        return daily(first, last), daily(first - days, first - timedelta(days=1))

    def stats(a: datetime, b: datetime) -> dict[str, Any]:
        by_status = {st: records.count(a, b, status=st) for st in ("error", "timeout", "rejected")}
        return {"start": a, "end": b, "source": "records", **records.window_stats(a, b), "by_status": by_status}

    return stats(start, end), stats(start - length, start)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def render_postmortem(
    incident: Incident,
    events: Sequence[IncidentEvent],
    alerts: Sequence[IncidentAlert],
    window: dict[str, Any],
    baseline: dict[str, Any],
    now: datetime,
) -> str:
    """The post-mortem draft.

    Args:
        incident: the incident.
        events: its whole timeline (internal entries included: a post-mortem is an internal document).
        alerts: the Alertmanager alerts attached to it.
        window: `{"start", "end", **window_stats, "by_status": {status: count}}` of the incident window.
        baseline: the same for the window before it.
        now: the time of writing (decides whether the post-mortem is overdue).
    """
    sev = get_severity(incident.sev)
    t = targets(incident, now)
    lines = [
        f"# Post-mortem (draft): incident #{incident.id}: {_cell(incident.title)}",
        "",
        f"- Severity: {sev.name} ({sev.title}: {sev.definition})",
        f"- Status: {incident.status}",
        f"- Incident commander: {_cell(incident.commander) or 'not assigned'}",
        f"- Source: {_cell(incident.source)}"
        + (f" (alert group {_cell(incident.alert_group)})" if incident.alert_group else ""),
        f"- Written: {_t(now)}",
    ]
    if t.postmortem_due_at is None:
        lines.append("- Post-mortem due: 48 hours after resolution (the incident is not resolved yet)")
    elif not t.postmortem_required:
        lines.append(f"- Post-mortem due: optional for {sev.name}; if held, by {_t(t.postmortem_due_at)}")
    else:
        flag = " **(OVERDUE)**" if t.postmortem_overdue else ""
        lines.append(f"- Post-mortem due: {_t(t.postmortem_due_at)}{flag}")
    if incident.postmortem_meeting_at:
        lines.append(f"- Post-mortem meeting: {_t(incident.postmortem_meeting_at)}")
    lines += [
        "",
        "## Summary",
        "",
        _md(incident.summary) or "_To be written._",
        "",
        "## Response times",
        "",
        "| Milestone | Time | Since start | Target |",
        "| --- | --- | --- | --- |",
        f"| Started (detected) | {_t(incident.started_at)} | - | - |",
        _target("Acknowledged", incident.acknowledged_at, incident.started_at, sev.response_minutes),
        _target("Mitigated", incident.mitigated_at, incident.started_at, None),
        _target("Resolved", incident.resolved_at, incident.started_at, None),
        "",
        f"Time to acknowledge: {format_duration(_d(incident.acknowledged_at, incident.started_at))}; "
        f"time to mitigate: {format_duration(_d(incident.mitigated_at, incident.started_at))}; "
        f"time to resolve: {format_duration(_d(incident.resolved_at, incident.started_at))}.",
        "",
        "## Impact",
        "",
        _md(incident.impact) or "_Describe who was affected and how._",
        "",
        _measured(window, baseline),
        "",
        "| Window | Requests | Failed | Failure rate | Errors | Timeouts | Rejected | p50 latency | p99 latency |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, stats in (("Incident", window), ("Before", baseline)):
        by = stats["by_status"]
        lines.append(
            f"| {label} | {stats['total']} | {stats['errors']} | {_rate(stats)} | {by.get('error', 0)} "
            f"| {by.get('timeout', 0)} | {by.get('rejected', 0)} | {_ms(stats['p50_latency_ms'])} "
            f"| {_ms(stats['p99_latency_ms'])} |"
        )
    lines += ["", _slow(window, baseline), "", "## Alerts", ""]
    if alerts:
        lines += ["| Alert | Severity | Status | Started | Ended |", "| --- | --- | --- | --- | --- |"]
        group = json.loads(incident.group_labels) if incident.group_labels else {}
        for a in alerts:
            labels = json.loads(a.labels)
            extra = ", ".join(
                f"{k}={v}" for k, v in sorted(labels.items()) if k not in group and k not in _QUIET_LABELS
            )
            name = (a.alertname or a.fingerprint) + (f" ({extra})" if extra else "")
            lines.append(
                f"| {_cell(name)} | {_cell(a.sev) or '-'} | {_cell(a.status)} | {_t(a.starts_at)} | {_t(a.ends_at)} |"
            )
    else:
        lines.append("No Alertmanager alert was attached (the incident was opened by hand).")
    lines += [
        "",
        "## Timeline",
        "",
        "| Time (UTC) | Who | What | Visibility | Details |",
        "| --- | --- | --- | --- | --- |",
    ]
    for e in events:
        lines.append(f"| {_t(e.created_at)} | {_cell(e.author)} | {e.kind} | {e.visibility} | {_cell(e.message)} |")
    lines += [
        "",
        "## Root cause",
        "",
        _md(incident.root_cause) or "_What caused the incident (ask why until the answer is a process or a design)._",
        "",
        "## Resolution",
        "",
        _md(incident.resolution) or "_How it was fixed._",
        "",
        "## What went well",
        "",
        "- ",
        "",
        "## What went wrong",
        "",
        "- ",
        "",
        "## Action items",
        "",
        "| Action | Owner | Due | Ticket |",
        "| --- | --- | --- | --- |",
        "| Prevent: | | | |",
        "| Detect sooner: | | | |",
        "| Mitigate faster: | | | |",
        "",
    ]
    return "\n".join(lines)


def _measured(window: dict[str, Any], baseline: dict[str, Any]) -> str:
    """The sentence that says where the impact figures come from."""
    span = f"{_t(window['start'])} to {_t(window['end'])}"
    before = f"{_t(baseline['start'])} to {_t(baseline['end'])}"
    if "daily" in (window.get("source"), baseline.get("source")):
        return (
            f"The raw inference records of this time have passed their retention: measured from the daily aggregates "
            f"(whole UTC days; latency percentiles to the bucket bound), incident {span} compared with {before}:"
        )
    return (
        f"Measured from the inference records, incident window {span} "
        f"compared with the {format_duration(baseline['end'] - baseline['start'])} before it:"
    )


def _d(later: datetime | None, earlier: datetime) -> timedelta | None:
    return None if later is None else later - earlier


def _slow(window: dict[str, Any], baseline: dict[str, Any]) -> str:
    p99, before = window["p99_latency_ms"], baseline["p99_latency_ms"]
    if p99 is None:
        return "No successful request in the incident window: latency cannot be compared."
    if before is None or before <= 0:
        return f"p99 latency during the incident: {_ms(p99)} (no successful request before it to compare with)."
    ratio = p99 / before
    verdict = "slower" if ratio >= 1 else "faster"
    return f"p99 latency during the incident: {_ms(p99)}, {ratio:.1f}x the {_ms(before)} before it ({verdict})."
