"""Exchange with other frameworks (weights only; nothing is unpickled here)."""

from spikeformer.interop.pth import import_pth
from spikeformer.interop.spikingjelly import from_spikingjelly

__all__ = ["from_spikingjelly", "import_pth"]
