"""Incidents: the state machine and timeline, Alertmanager alert groups and silences, messages, post-mortems.

The public face of the package; import from here. The modules:

- `service`: `IncidentService`, every operation on incidents (open, acknowledge, update, resolve, close ...).
- `errors`: the errors of those operations, each with its HTTP status and CLI exit code.
- `views`: the state machine's constants, response targets, and the JSON views of incidents.
- `alertmanager`: Alertmanager's webhook payload and its silences API.
- `alert_groups`: one webhook notification applied to the incident of its alert group.
- `silences`: the silences of an incident, created on acknowledgement and expired on resolution.
- `messages`: the runbook's three communication templates and the chat webhook.
- `postmortem`: the post-mortem draft, with the impact measured from the inference records.

Layering: this package may import `spikeformer.store`, `spikeformer.settings` and the rest of `spikeformer.ops`,
never `spikeformer.serve` or `spikeformer.cli`.
"""

from spikeformer.ops.incidents.alert_groups import ALERTMANAGER_AUTHOR
from spikeformer.ops.incidents.alertmanager import AlertGroup, WebhookAlert, parse_webhook
from spikeformer.ops.incidents.errors import (
    IncidentConflictError,
    IncidentError,
    IncidentInputError,
    IncidentNotFoundError,
)
from spikeformer.ops.incidents.messages import MESSAGE_KINDS, render_message
from spikeformer.ops.incidents.postmortem import render_postmortem
from spikeformer.ops.incidents.service import (
    ALERTMANAGER_URL_ENV,
    CHAT_WEBHOOK_URL_ENV,
    DEFAULT_SILENCE,
    MAX_SILENCE,
    IncidentService,
)
from spikeformer.ops.incidents.views import (
    ACTIVE_STATUSES,
    EVENT_KINDS,
    POSTMORTEM_DUE,
    Targets,
    format_duration,
    incident_view,
    public_incident_view,
    redact_keys,
    targets,
)

__all__ = [
    "ACTIVE_STATUSES",
    "ALERTMANAGER_AUTHOR",
    "ALERTMANAGER_URL_ENV",
    "CHAT_WEBHOOK_URL_ENV",
    "DEFAULT_SILENCE",
    "EVENT_KINDS",
    "MAX_SILENCE",
    "MESSAGE_KINDS",
    "POSTMORTEM_DUE",
    "AlertGroup",
    "IncidentConflictError",
    "IncidentError",
    "IncidentInputError",
    "IncidentNotFoundError",
    "IncidentService",
    "Targets",
    "WebhookAlert",
    "format_duration",
    "incident_view",
    "parse_webhook",
    "public_incident_view",
    "redact_keys",
    "render_message",
    "render_postmortem",
    "targets",
]
