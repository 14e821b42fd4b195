"""The inference runtime: ``Runner`` is the one path every caller uses.

The public names are imported on first use (PEP 562 module ``__getattr__``), so that ``spikeformer.runtime.memory``
can configure the allocator before anything imports torch.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False

__all__ = ["AUTO_MIN_AGREEMENT", "PRECISIONS", "RunStats", "Runner", "select_precision"]

if TYPE_CHECKING:  # what static tools see; at run time these come from ``__getattr__``
    from spikeformer.runtime.runner import AUTO_MIN_AGREEMENT, PRECISIONS, Runner, RunStats, select_precision


def __getattr__(name: str) -> object:
    """Import ``spikeformer.runtime.runner`` on first access of one of its public names.

    Raises:
        AttributeError: ``name`` is not a public name of ``spikeformer.runtime``.
    """
    if name in __all__:
        value = getattr(importlib.import_module("spikeformer.runtime.runner"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
