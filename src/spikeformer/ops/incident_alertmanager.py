"""Deprecated: moved to `spikeformer.ops.incidents.alertmanager`.

Kept for one release; importing it warns. Import from `spikeformer.ops.incidents.alertmanager` instead.
"""

from __future__ import annotations

import warnings

from spikeformer.ops.incidents.alertmanager import (
    SEVERITY_LABEL_DEFAULTS,
    AlertGroup,
    WebhookAlert,
    alert_severity,
    create_silence,
    expire_silence,
    group_hash,
    parse_webhook,
)

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

warnings.warn(
    "spikeformer.ops.incident_alertmanager moved to spikeformer.ops.incidents.alertmanager; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
