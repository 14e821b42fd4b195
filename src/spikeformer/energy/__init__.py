"""Energy profiling: operation and spike counters, energy models per chip, reports and plots.

``profile(model, x) -> EnergyReport``; ``report.energy("cmos45nm")`` in joules per inference; counting rules in
``spikeformer.energy.report.CONVENTIONS`` and ``docs/energy.md``. Sits at the models level: imports functional, nn,
models and data only.
"""

from spikeformer.energy.counter import INTEGER_INPUT_RULES, OpCounter, classify_input, profile
from spikeformer.energy.hardware import (
    HARDWARE_MODELS,
    CMOS45nm,
    EnergyLine,
    GpuMeasured,
    HardwareModel,
    Loihi,
    Loihi2,
    OpCounts,
    SpiNNaker2,
    get_hardware,
    resolve_hardware,
)
from spikeformer.energy.paper import (
    SPIKFORMER_ANN_8_512,
    SPIKFORMER_IMAGENET,
    PaperRow,
    encoding_layer_flops,
    paper_energy,
    reproduce_spikformer_imagenet,
    spikformer_first_layer_flops,
)
from spikeformer.energy.plots import plot_energy, plot_firing_rates
from spikeformer.energy.report import CONVENTIONS, DEFAULT_HARDWARE, EnergyReport, LayerStats
from spikeformer.energy.run import profile_inputs, profile_run

__all__ = [
    "CMOS45nm",
    "CONVENTIONS",
    "DEFAULT_HARDWARE",
    "EnergyLine",
    "EnergyReport",
    "GpuMeasured",
    "HARDWARE_MODELS",
    "HardwareModel",
    "INTEGER_INPUT_RULES",
    "LayerStats",
    "Loihi",
    "Loihi2",
    "OpCounter",
    "OpCounts",
    "PaperRow",
    "SPIKFORMER_ANN_8_512",
    "SPIKFORMER_IMAGENET",
    "SpiNNaker2",
    "classify_input",
    "encoding_layer_flops",
    "get_hardware",
    "paper_energy",
    "plot_energy",
    "plot_firing_rates",
    "profile",
    "profile_inputs",
    "profile_run",
    "reproduce_spikformer_imagenet",
    "resolve_hardware",
    "spikformer_first_layer_flops",
]
