"""Deprecated: moved to `spikeformer.ops.incidents.messages`.

Kept for one release; importing it warns. Import from `spikeformer.ops.incidents.messages` instead.
"""

from __future__ import annotations

import warnings

from spikeformer.ops.incidents.messages import MESSAGE_KINDS, check_url, post_to_chat, render_message

__all__ = ["MESSAGE_KINDS", "check_url", "post_to_chat", "render_message"]

warnings.warn(
    "spikeformer.ops.incident_messages moved to spikeformer.ops.incidents.messages; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
