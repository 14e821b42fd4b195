"""ANN -> SNN conversion of pre-trained transformers and CNNs; see ``docs/conversion.md``.

``SpikeformerConverter(timesteps, method).calibrate(ann, data)`` then ``.convert(ann)``; ``profile_converted``
adds the attention products to the energy profile; ``run_conversion`` (``spikeformer convert``) runs the whole sweep
from a checkpoint.
"""

from spikeformer.convert.converter import (
    METHODS,
    ConversionError,
    GatedMaxPool2d,
    LayerProblem,
    SpikeformerConverter,
    SpikingSequential,
    find_unconvertible,
)
from spikeformer.convert.energy import profile_converted
from spikeformer.convert.run import plot_conversion, probe_thresholds, run_conversion

__all__ = [
    "METHODS",
    "ConversionError",
    "GatedMaxPool2d",
    "LayerProblem",
    "SpikeformerConverter",
    "SpikingSequential",
    "find_unconvertible",
    "plot_conversion",
    "probe_thresholds",
    "profile_converted",
    "run_conversion",
]
