"""Hardware: telemetry, NIR exchange, and the neuromorphic compiler (split, quantize, place) with its emulators."""

from spikeformer.hardware.compiler import CompileResult, compile_graph, compile_model
from spikeformer.hardware.emulated import EmulatorSetup, prepare_emulator
from spikeformer.hardware.emulator import BACKENDS, EmulatorResult, evaluate_emulated, run_graph, run_program
from spikeformer.hardware.graph import HwGraph, HwNode, UnsupportedLayerError, lower_model
from spikeformer.hardware.nir import from_nir, to_nir
from spikeformer.hardware.quantize import IntProgram, QuantConfig, QuantizationError, quantize_graph
from spikeformer.hardware.report import placement_text, report_text, write_compile_outputs
from spikeformer.hardware.targets import TARGETS, TargetSpec, get_target
from spikeformer.hardware.telemetry import (
    DeviceStatus,
    cpu_status,
    cuda_status,
    hardware_status,
    loihi2_status,
    spinnaker_status,
)

__all__ = [
    "BACKENDS",
    "CompileResult",
    "DeviceStatus",
    "EmulatorSetup",
    "EmulatorResult",
    "HwGraph",
    "HwNode",
    "IntProgram",
    "QuantConfig",
    "QuantizationError",
    "TARGETS",
    "TargetSpec",
    "UnsupportedLayerError",
    "compile_graph",
    "compile_model",
    "cpu_status",
    "cuda_status",
    "evaluate_emulated",
    "from_nir",
    "get_target",
    "hardware_status",
    "loihi2_status",
    "lower_model",
    "placement_text",
    "prepare_emulator",
    "quantize_graph",
    "report_text",
    "run_graph",
    "run_program",
    "spinnaker_status",
    "to_nir",
    "write_compile_outputs",
]
