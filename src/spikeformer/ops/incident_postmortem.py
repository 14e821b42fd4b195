"""Deprecated: moved to `spikeformer.ops.incidents.postmortem`.

Kept for one release; importing it warns. Import from `spikeformer.ops.incidents.postmortem` instead.
"""

from __future__ import annotations

import warnings

from spikeformer.ops.incidents.postmortem import render_postmortem

__all__ = ["render_postmortem"]

warnings.warn(
    "spikeformer.ops.incident_postmortem moved to spikeformer.ops.incidents.postmortem; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
