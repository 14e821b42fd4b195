"""Deprecated: moved to :mod:`spikeformer.kernels.triton_bn_lif`; importing this name warns and gives that module.

The old name is bound to the new module object itself (in ``sys.modules``), so reading its state, calling it and
monkeypatching it act on the module the library uses. Kept for one release.
"""

import sys
import warnings

from spikeformer.kernels import triton_bn_lif as _new

__all__ = list(_new.__all__)  # the public names of the module this name now stands for

warnings.warn(
    "spikeformer.functional.triton_bn_lif moved to spikeformer.kernels.triton_bn_lif; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _new
