"""Deprecated: the Triton LIF kernels moved to :mod:`spikeformer.kernels.triton_lif`.

Importing this name warns and gives that module (the same object, in ``sys.modules``).

Kept for one release.
"""

import sys

from spikeformer._deprecation import moved_module

sys.modules[__name__] = moved_module(__name__, "spikeformer.kernels.triton_lif")
