"""Chip targets: per-core limits and number formats, each constant with its source.

A constant marked ``unverified`` comes from a secondary source or is a stand-in from another chip generation; every
one is a dataclass field, so a user with better figures passes them (``spikeformer compile --limit NAME=VALUE``).
``TargetSpec.assumptions()`` lists what a report must print.

Sources:
- Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE Micro 38(1), 2018 (Loihi 1):
  128 cores per chip, 1,024 compartments and 128 KB synaptic memory per core, fan-in <= 4,096 axons and fan-out
  <= 4,096 core-to-core edges per core, weights 1-9 bits.
- Intel Loihi 2 product brief (Intel 4): 128 neuro-cores and 6 embedded x86 cores per chip, up to 1M neurons and 120M
  synapses per chip, graded spikes with an integer payload.
- Lava's bit-accurate LIF (lava-nc 0.10, ``PyLifModelBitAcc``): 24-bit membrane and current, 12-bit decays
  (``v <- v (4096 - dv) / 4096``), synaptic input and threshold left-shifted by 6 bits, 13-bit bias mantissa;
  ``Dense`` weights are 8-bit mantissas with a shared exponent. The loihi2 number formats follow Lava.
- Hoppner et al., "The SpiNNaker 2 Processing Element Architecture for Hybrid Digital Neuromorphic Computing",
  2021: 152 processing elements (ARM Cortex-M4F with MAC accelerator) per chip, 128 KB SRAM per PE.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TargetSpec", "TARGETS", "get_target"]


@dataclass(frozen=True)
class TargetSpec:
    """Limits and number formats of one chip.

    Args:
        name: ``loihi2`` or ``spinnaker2``.
        cores_per_chip: neuromorphic cores (Loihi 2) or processing elements (SpiNNaker2) per chip.
        neurons_per_core: neurons one core holds.
        fan_in_per_core: distinct input axons one core accepts.
        fan_out_per_core: destination cores one core may send to.
        memory_per_core_bytes: synaptic memory (Loihi) or SRAM (SpiNNaker2 PE, shared with state and code).
        neuron_state_bytes: bytes of that memory each neuron's state takes (0: separate state memory).
        neurons_per_chip, synapses_per_chip: chip-wide limits (0: none published).
        embedded_cpus_per_chip: processors on the chip for work the cores cannot do (x86 on Loihi 2; on SpiNNaker2
            every PE is an ARM core, so processor work runs on PEs).
        weight_bits: signed weight mantissa bits; weights share an exponent per layer (or per output channel).
        bias_bits: signed bias mantissa bits (the bias has its own exponent).
        membrane_bits: signed membrane width; the membrane saturates at ``+-(2^(bits-1) - 1)``.
        decay_bits: decay resolution: ``v <- trunc(v (2^bits - dv) / 2^bits)``.
        threshold_shift: thresholds are multiples of ``2^threshold_shift`` (Lava: 6).
        graded_spikes: integer spike payloads (residual streams and processor results enter cores as such).
        sources: which source each field comes from, and whether it is verified.
    """

    name: str
    cores_per_chip: int
    neurons_per_core: int
    fan_in_per_core: int
    fan_out_per_core: int
    memory_per_core_bytes: int
    neuron_state_bytes: int
    neurons_per_chip: int
    synapses_per_chip: int
    embedded_cpus_per_chip: int
    weight_bits: int
    bias_bits: int
    membrane_bits: int
    decay_bits: int
    threshold_shift: int
    graded_spikes: bool
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def with_overrides(self, **overrides: Any) -> TargetSpec:
        """A copy with some fields replaced; an overridden field's source becomes ``user-supplied``."""
        known = {f.name for f in dataclasses.fields(self)} - {"name", "sources"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown target limit(s) {unknown}; accepted: {sorted(known)}")
        sources = {**self.sources, **{k: "user-supplied" for k in overrides}}
        return dataclasses.replace(self, **overrides, sources=sources)

    def assumptions(self) -> list[str]:
        """Every field whose source is not a primary published figure for this chip."""
        return [f"{k} = {getattr(self, k)}: {v}" for k, v in self.sources.items() if not v.startswith("published")]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_DAVIES = "Davies et al., IEEE Micro 2018 (Loihi 1)"
_BRIEF = "Intel Loihi 2 product brief"
_LAVA = "Lava 0.10 bit-accurate LIF/Dense models"
_HOPPNER = "Hoppner et al. 2021 (SpiNNaker2 PE architecture)"

LOIHI2 = TargetSpec(
    name="loihi2",
    cores_per_chip=128,
    neurons_per_core=8192,
    fan_in_per_core=4096,
    fan_out_per_core=4096,
    memory_per_core_bytes=128 * 1024,
    neuron_state_bytes=0,
    neurons_per_chip=1_000_000,
    synapses_per_chip=120_000_000,
    embedded_cpus_per_chip=6,
    weight_bits=8,
    bias_bits=13,
    membrane_bits=24,
    decay_bits=12,
    threshold_shift=6,
    graded_spikes=True,
    sources={
        "cores_per_chip": f"published: {_BRIEF}",
        "neurons_per_core": "unverified: about 8k neurons per core (secondary sources)",
        "fan_in_per_core": f"unverified for Loihi 2: stand-in from {_DAVIES}",
        "fan_out_per_core": f"unverified for Loihi 2: stand-in from {_DAVIES}",
        "memory_per_core_bytes": f"unverified for Loihi 2: 128 KB (secondary sources; published for {_DAVIES})",
        "neuron_state_bytes": "assumed: neuron state is held apart from synaptic memory (as on Loihi 1)",
        "neurons_per_chip": f"published: {_BRIEF}",
        "synapses_per_chip": f"published: {_BRIEF}",
        "embedded_cpus_per_chip": f"published: {_BRIEF}",
        "weight_bits": f"published: {_LAVA} (default weight precision 8 bits)",
        "bias_bits": f"published: {_LAVA}",
        "membrane_bits": f"published: {_LAVA}",
        "decay_bits": f"published: {_LAVA}",
        "threshold_shift": f"published: {_LAVA}",
        "graded_spikes": f"published: {_BRIEF}",
    },
)

SPINNAKER2 = TargetSpec(
    name="spinnaker2",
    cores_per_chip=152,
    neurons_per_core=1024,
    fan_in_per_core=1 << 20,
    fan_out_per_core=1 << 20,
    memory_per_core_bytes=128 * 1024,
    neuron_state_bytes=16,
    neurons_per_chip=0,
    synapses_per_chip=0,
    embedded_cpus_per_chip=0,
    weight_bits=8,
    bias_bits=32,
    membrane_bits=32,
    decay_bits=16,
    threshold_shift=0,
    graded_spikes=True,
    sources={
        "cores_per_chip": f"published: {_HOPPNER}",
        "neurons_per_core": "assumed: neurons per PE are limited by software and SRAM; no published figure",
        "fan_in_per_core": "assumed: no fixed limit (software synapses in SRAM); memory is the limit",
        "fan_out_per_core": "assumed: no fixed limit (multicast routing tables)",
        "memory_per_core_bytes": f"published: {_HOPPNER} (SRAM per PE, shared with code; code size not deducted)",
        "neuron_state_bytes": "assumed: 4 x 32-bit words of state per neuron",
        "weight_bits": "assumed: 8-bit weights for the PE's MAC accelerator / synapse words",
        "bias_bits": "assumed: 32-bit fixed-point software neurons",
        "membrane_bits": "assumed: 32-bit fixed-point software neurons",
        "decay_bits": "assumed: 16-bit fractional decay in software",
        "threshold_shift": "assumed: software neurons compare at full resolution",
        "graded_spikes": "assumed: software neurons can send integer payloads",
    },
)

TARGETS: dict[str, TargetSpec] = {"loihi2": LOIHI2, "spinnaker2": SPINNAKER2}


def get_target(name: str, **overrides: Any) -> TargetSpec:
    """The target ``name`` (``loihi2``, ``spinnaker2``) with optional field overrides."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; accepted: {sorted(TARGETS)}")
    return TARGETS[name].with_overrides(**overrides) if overrides else TARGETS[name]
