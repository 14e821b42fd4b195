"""ANN -> SNN conversion of pre-trained transformers and CNNs (issue 10); see ``docs/conversion.md``.

``SpikeformerConverter(timesteps, method).calibrate(ann, data)`` then ``.convert(ann)``; ``profile_converted``
adds the attention products to the energy profile; ``spikeformer convert`` runs the whole sweep from a checkpoint.
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

__all__ = [
    "METHODS",
    "ConversionError",
    "GatedMaxPool2d",
    "LayerProblem",
    "SpikeformerConverter",
    "SpikingSequential",
    "find_unconvertible",
    "profile_converted",
]
