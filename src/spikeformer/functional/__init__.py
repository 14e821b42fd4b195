"""Pure functions: neuron steps, surrogate gradients, spiking attention products."""

from spikeformer.functional.attention import spike_driven_kv, spiking_self_attention
from spikeformer.functional.neuron import (
    fire_and_reset,
    if_charge,
    if_multistep,
    if_step,
    lif_charge,
    lif_multistep,
    lif_step,
)
from spikeformer.functional.surrogate import ATanSpike, FastSigmoidSpike, SigmoidSpike, heaviside

__all__ = [
    "ATanSpike",
    "FastSigmoidSpike",
    "SigmoidSpike",
    "fire_and_reset",
    "heaviside",
    "if_charge",
    "if_multistep",
    "if_step",
    "lif_charge",
    "lif_multistep",
    "lif_step",
    "spike_driven_kv",
    "spiking_self_attention",
]
