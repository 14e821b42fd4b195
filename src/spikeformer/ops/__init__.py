"""Operations: the severity table (SEV-1..SEV-4) and, on top of the store, incident logic and operational commands.

The incident logic is the package `spikeformer.ops.incidents` (import it from there); `spikeformer.ops.smoke` and
`spikeformer.ops.doctor` are the recovery check and the investigation steps of the runbook.

`spikeformer.ops.severity` is the one table of severities in code; the alert rules (`deploy/prometheus/rules.yml`),
the Alertmanager routes (`deploy/alertmanager/alertmanager.yml`), the incident logic and the runbook
(`docs/runbooks/incident-response.md`) take it from there or are tested against it.

Layering: this package may import `spikeformer.store` and below, never `spikeformer.serve` or `spikeformer.cli`.
"""

from spikeformer.ops.severity import SEVERITIES, Severity, escalate, get_severity, render_markdown_table

__all__ = ["SEVERITIES", "Severity", "escalate", "get_severity", "render_markdown_table"]
