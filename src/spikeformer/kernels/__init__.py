"""Fast paths below ``spikeformer.functional``: compiled CPU kernels and Triton kernels, each with its availability
test.

- :mod:`spikeformer.kernels.cpu`: the C++ extension (``csrc/kernels.cpp``: multi-step neurons, event-driven products,
  max-pooling, int8 helpers), built on first use; ``get()`` is ``None`` where it cannot build.
- :mod:`spikeformer.kernels.triton_lif`: multi-step LIF/IF forward and backward on CUDA.
- :mod:`spikeformer.kernels.triton_bn_lif`: training-mode BatchNorm fused with the neuron after it, on CUDA.
- :mod:`spikeformer.kernels.triton_pool`: channels-last max-pooling on CUDA without int64 indices.

Every kernel has a plain-torch reference it is tested against; the callers (``spikeformer.functional.fused``,
``spikeformer.nn``, ``spikeformer.runtime``) pick a kernel when its ``available`` test passes and fall back to the
reference otherwise. This package sits at the bottom layer: it imports torch and ``spikeformer.settings`` only.
The submodules are imported by name (``from spikeformer.kernels import cpu``); importing the package builds nothing.
"""

__all__: list[str] = []
