"""Deprecated: the loader of the compiled CPU kernels moved to :mod:`spikeformer.kernels.cpu`.

Importing this name warns and gives that module (the same object, in ``sys.modules``).

Kept for one release.
"""

import sys

from spikeformer._deprecation import moved_module

sys.modules[__name__] = moved_module(__name__, "spikeformer.kernels.cpu")
