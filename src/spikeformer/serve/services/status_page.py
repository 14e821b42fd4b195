"""The status document as one self-contained HTML page: ``static/status.html`` filled with escaped values.

Every value from the document goes through :func:`html.escape` (quotes included) before it reaches the page, whether
in text or in an attribute; the template itself holds no value. The page has an inline style, no script and no
external reference (the route's Content-Security-Policy forbids loading anything).
"""

from __future__ import annotations

import functools
import html
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

from spikeformer.serve.services.status import STATES
from spikeformer.store import ACTIVE_STATUSES

__all__ = ["TEMPLATE", "render_status_html"]

TEMPLATE = Path(__file__).resolve().parents[1] / "static" / "status.html"


@functools.cache
def _template() -> Template:
    return Template(TEMPLATE.read_text(encoding="utf-8"))


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    t = datetime.fromisoformat(iso).astimezone(UTC)
    return f'<time datetime="{_e(iso)}">{t:%Y-%m-%d %H:%M} UTC</time>'


def _percent(ratio: float | None) -> str:
    return "no data" if ratio is None else f"{100 * ratio:.2f} %"


def _incidents(doc: dict[str, Any]) -> str:
    if not doc["incidents_available"]:
        return '<p class="card">Incident information is temporarily unavailable.</p>'
    if not doc["incidents"]:
        return '<p class="card" data-testid="no-incidents">No active incidents.</p>'
    parts = []
    for i in doc["incidents"]:
        update = i.get("latest_update")
        parts.append(
            f'<article class="card" data-testid="incident" data-incident="{_e(i["id"])}">'
            f'<div><span class="sev">{_e(i["sev"])} {_e(i["severity"])}</span> <strong>{_e(i["title"])}</strong></div>'
            f'<div class="meta">{_e(i["status"].capitalize())} · started {_when(i["started_at"])} · '
            f"{_e(i['duration'])}</div>"
            + (f'<p data-testid="public-update">{_when(update["time"])} {_e(update["message"])}</p>' if update else "")
            + "</article>"
        )
    return "".join(parts)


def _components(doc: dict[str, Any]) -> str:
    return "".join(
        f'<li data-testid="component" data-component="{_e(c["id"])}" data-state="{_e(c["state"])}">'
        f'<span class="name">{_e(c["name"])}</span><span class="desc">{_e(c["description"])}</span>'
        f'<span class="label t-{_e(c["state"])}">{_e(STATES[c["state"]])}</span></li>'
        for c in doc["components"]
    )


def _bars(bars: list[dict[str, Any]]) -> str:
    parts = []
    for b in bars:
        label = f"{b['date']}: " + (
            "no data (no requests)" if b["total"] == 0 else f"{_percent(b['availability'])} of {b['total']:,} requests"
        )
        if b["incidents"]:
            label += "; " + "; ".join(f"#{i['id']} {i['sev']} {i['title']}" for i in b["incidents"])
        parts.append(
            f'<span class="bar s-{_e(b["state"])}" data-testid="bar" data-date="{_e(b["date"])}" '
            f'data-state="{_e(b["state"])}" title="{_e(label)}"></span>'
        )
    return "".join(parts)


def _history(doc: dict[str, Any]) -> str:
    past = [i for i in doc["history"] if i["status"] not in ACTIVE_STATUSES]
    if not doc["incidents_available"]:
        return '<p class="card">Incident history is temporarily unavailable.</p>'
    if not past:
        return f'<p class="card">No incidents in the last {_e(doc["availability"]["days"])} days.</p>'
    return "".join(
        f'<div class="card" data-testid="past-incident" data-incident="{_e(i["id"])}">'
        f'<span class="sev">{_e(i["sev"])}</span> <strong>{_e(i["title"])}</strong>'
        f'<div class="meta">{_e(i["status"].capitalize())} · {_when(i["started_at"])} · '
        f"lasted {_e(i['duration'])}</div></div>"
        for i in past
    )


def render_status_html(doc: dict[str, Any]) -> str:
    """The status document (``build_status``) as one self-contained HTML page.

    Args:
        doc: The status document, as ``GET /status.json`` answers it.
    """
    availability = doc["availability"]
    bars = availability["bars"]
    return _template().substitute(
        overall_state=_e(doc["status"]["state"]),
        overall_description=_e(doc["status"]["description"]),
        incidents=_incidents(doc),
        components=_components(doc),
        days=_e(availability["days"]),
        availability=_e(_percent(availability["ratio"])),
        requests=_e(f"{availability['total']:,}"),
        bars=_bars(bars),
        first_day=_e(bars[0]["date"] if bars else ""),
        history=_history(doc),
        updated=_when(doc["generated_at"]),
    )
