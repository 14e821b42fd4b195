"""A checkpoint compiled for a fixed-point chip emulator: what ``spikeformer evaluate --backend *-emu`` runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from spikeformer.checkpoint import load_checkpoint
from spikeformer.data import Preprocess
from spikeformer.hardware.compiler import quant_config_for
from spikeformer.hardware.emulator import BACKENDS
from spikeformer.hardware.graph import lower_model
from spikeformer.hardware.quantize import IntProgram, quantize_graph
from spikeformer.hardware.targets import get_target

__all__ = ["EmulatorSetup", "prepare_emulator"]


@dataclass
class EmulatorSetup:
    """The integer program of a checkpoint for one emulator, with the float model it is compared against."""

    backend: str
    program: IntProgram
    model: nn.Module
    preprocess: Preprocess
    quantization: dict[str, Any]


def prepare_emulator(checkpoint: str | Path, backend: str, weight_splits: int = 2) -> EmulatorSetup:
    """Load ``checkpoint``, lower it and quantize it for ``backend`` (weight exponent shared per layer).

    Args:
        checkpoint: Checkpoint folder.
        backend: ``loihi2-emu`` or ``spinnaker2-emu`` (:data:`spikeformer.hardware.emulator.BACKENDS`).
        weight_splits: Synapse groups per weight (see ``spikeformer compile``).

    Raises:
        ValueError: Unknown backend.
        spikeformer.checkpoint.CheckpointError: The checkpoint cannot be read.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; accepted: torch, {', '.join(BACKENDS)}")
    model, manifest = load_checkpoint(checkpoint)
    cfg = quant_config_for(manifest, None, "layer", weight_splits)
    prog = quantize_graph(lower_model(model), get_target(backend.removesuffix("-emu")), cfg)
    quantization = {"weight_bits": prog.target.weight_bits, "weight_splits": weight_splits, "exponent": "layer"}
    return EmulatorSetup(backend, prog, model, manifest.preprocess, quantization)
