"""Deprecated: moved to `spikeformer.ops.incidents` (errors in `.errors`, targets and views in `.views`).

Kept for one release; importing it warns. Import from `spikeformer.ops.incidents` instead.
"""

from __future__ import annotations

import warnings

from spikeformer.ops.incidents.errors import (
    IncidentConflictError,
    IncidentError,
    IncidentInputError,
    IncidentNotFoundError,
)
from spikeformer.ops.incidents.service import ALERTMANAGER_URL_ENV, CHAT_WEBHOOK_URL_ENV
from spikeformer.ops.incidents.views import (
    ACTIVE_STATUSES,
    EVENT_KINDS,
    POSTMORTEM_DUE,
    POSTMORTEM_REQUIRED_LEVEL,
    Targets,
    alert_view,
    event_view,
    format_duration,
    incident_view,
    iso,
    targets,
)

__all__ = [
    "ACTIVE_STATUSES",
    "ALERTMANAGER_URL_ENV",
    "CHAT_WEBHOOK_URL_ENV",
    "EVENT_KINDS",
    "POSTMORTEM_DUE",
    "POSTMORTEM_REQUIRED_LEVEL",
    "IncidentConflictError",
    "IncidentError",
    "IncidentInputError",
    "IncidentNotFoundError",
    "Targets",
    "alert_view",
    "event_view",
    "format_duration",
    "incident_view",
    "iso",
    "targets",
]

warnings.warn(
    "spikeformer.ops.incident_common moved to spikeformer.ops.incidents (errors: spikeformer.ops.incidents.errors, "
    "targets and views: spikeformer.ops.incidents.views); import it from there",
    DeprecationWarning,
    stacklevel=2,
)
