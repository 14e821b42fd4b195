"""``EnergyReport``: per-layer operation counts of one profiled run, totals per inference, energy per hardware model.

Counts in ``LayerStats`` are totals over the profiled batch (``batch_size`` images, all ``timesteps`` steps), so they
stay exact integers; the report's totals, energies and table are per inference (divided by ``batch_size``).
The counting rules are in ``CONVENTIONS`` and ``docs/energy.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from spikeformer.energy.hardware import (
    HARDWARE_MODELS,
    EnergyLine,
    HardwareModel,
    OpCounts,
    resolve_hardware,
)

__all__ = ["CONVENTIONS", "DEFAULT_HARDWARE", "EnergyReport", "LayerStats"]

DEFAULT_HARDWARE: tuple[str, ...] = tuple(n for n, c in HARDWARE_MODELS.items() if not c.measured)

CONVENTIONS: dict[str, str] = {
    "flops": "dense MACs of one time step for one sample (the standard count: Cout*Hout*Wout*Cin/groups*kh*kw for a "
    "conv, N*Din*Dout for a linear, taps on zero padding included); the ANN of the same architecture runs each once",
    "sops": "accumulates driven by input events: (input event, synapse) pairs actually traversed, counted exactly "
    "from the input tensor (a conv's border events reach fewer outputs); for a linear layer this equals "
    "firing_rate * T * FLOPs; rate_sops gives the papers' firing_rate * T * FLOPs for every layer",
    "binary": "an input whose values are all 0 or 1 (checked on the tensor, not the layer name): nonzero x fan-out ACs",
    "count": "an input of integers (e.g. spike + spike residual sums in {0, 1, 2}): with integer_inputs='accumulate' "
    "(default) a value n is n spikes on one synapse, n ACs per fan-out (|n| for negatives); with 'mac' the layer is "
    "charged dense MACs",
    "real": "an input with a non-integer value (the image, token means): dense MACs at every step it is presented "
    "(direct encoding presents the image T times: T * FLOPs)",
    "ssa": "Spikformer's Q (K^T V), computed in that order: K^T V costs events(K) * d ACs (each K spike adds a d-wide "
    "row of V: an AND of two spikes, accumulated), Q (K^T V) costs events(Q) * d ACs (each Q spike adds a row of the "
    "integer matrix K^T V); dense N*d*d each per head and step; MACs when no operand is spikes; the 0.125 scale is "
    "folded into the next neuron's threshold (0 ops)",
    "sdsa": "spike-driven attention: K*V and Q*kv are masks of binary tensors (mask_ops, not charged), the token sum "
    "costs one AC per nonzero K*V product",
    "not counted": "BatchNorm (folded into the weights at inference), biases, max-pooling, residual additions, "
    "token and time means",
    "neurons": "one update per neuron per time step; spikes = updates that fired; firing_rate of a neuron row is its "
    "output spike rate, of any other row the spike rate of the input that drives it",
}


@dataclass
class LayerStats:
    """Counts of one layer (or attention product, or neuron) over the profiled batch, all time steps.

    Attributes:
        name: module path (attention products: the attention module's path plus ``.kv``, ``.qkv``, ``.q_kv``).
        kind: ``conv2d``, ``linear``, ``neuron:<class>``, ``ssa:k^T v``, ``ssa:q(k^T v)``, ``sdsa:sum(k*v)``,
            ``sdsa:q*kv``.
        input_kind: ``binary``, ``count``, ``real`` or ``mixed`` (over several calls); ``""`` for neurons.
        input_elements: elements of the input that drives the layer (for attention: the driving operand).
        events: spike events in that input (nonzero count; sum of ``|x|`` for integer inputs); 0 for real inputs.
        nonzero: nonzero elements of that input.
        max_input: largest ``|x|`` seen.
        dense_macs: dense MACs over the batch and all steps (``flops * timesteps * batch_size``).
        flops: dense MACs of one step for one sample (set by the report).
        sops: accumulates performed (spike-driven).
        macs: multiply-accumulates performed (non-spike inputs).
        mask_ops: elementwise ANDs of two spike tensors (counted, not charged).
        neuron_updates: neuron state updates; spikes: spikes emitted (neuron rows).
        reason: why the layer is charged as it is.
        calls: forward calls seen.
    """

    name: str
    kind: str
    input_kind: str = ""
    input_elements: int = 0
    events: int = 0
    nonzero: int = 0
    max_input: float = 0.0
    dense_macs: int = 0
    flops: float = 0
    sops: int = 0
    macs: int = 0
    mask_ops: int = 0
    neuron_updates: int = 0
    spikes: int = 0
    reason: str = ""
    calls: int = 0

    @property
    def is_neuron(self) -> bool:
        return self.kind.startswith("neuron")

    @property
    def firing_rate(self) -> float | None:
        """Neuron rows: output spikes per update. Others: input events per input element (``None`` for real input)."""
        if self.is_neuron:
            return self.spikes / self.neuron_updates if self.neuron_updates else 0.0
        if self.input_kind in ("binary", "count") and self.input_elements:
            return self.events / self.input_elements
        return None

    @property
    def rate_sops(self) -> float:
        """The papers' convention ``firing_rate * T * FLOPs`` over the batch (0 for real-valued inputs)."""
        rate = None if self.is_neuron else self.firing_rate
        return 0.0 if rate is None else rate * self.dense_macs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts (totals over the profiled batch)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "input_kind": self.input_kind,
            "firing_rate": self.firing_rate,
            "input_elements": self.input_elements,
            "events": self.events,
            "max_input": self.max_input,
            "flops": self.flops,
            "dense_macs": self.dense_macs,
            "sops": self.sops,
            "rate_sops": self.rate_sops,
            "macs": self.macs,
            "mask_ops": self.mask_ops,
            "neuron_updates": self.neuron_updates,
            "spikes": self.spikes,
            "reason": self.reason,
            "calls": self.calls,
        }


@dataclass
class EnergyReport:
    """The result of ``spikeformer.energy.profile``.

    Attributes:
        model_name: the model's registry name (or class name).
        timesteps: T of the profiled run.
        batch_size: images in the profiled batch; totals are divided by it.
        layers: per-layer counts in execution order.
        integer_inputs: the rule used for integer-valued inputs (``accumulate`` or ``mac``).
        measurements: measured joules per inference by hardware name (``gpu-measured``).
        output: the model's output of the profiled run (not serialised).
    """

    model_name: str
    timesteps: int
    batch_size: int
    layers: list[LayerStats]
    integer_inputs: str = "accumulate"
    measurements: dict[str, float] = field(default_factory=dict)
    output: torch.Tensor | None = field(default=None, repr=False, compare=False)

    # -- totals per inference -----------------------------------------------------------------------------------
    def _per(self, attr: str, neurons: bool | None = None) -> float:
        rows = self.layers if neurons is None else [r for r in self.layers if r.is_neuron == neurons]
        return sum(getattr(r, attr) for r in rows) / self.batch_size

    @property
    def total_sops(self) -> float:
        """Synaptic (accumulate) operations per inference."""
        return self._per("sops")

    @property
    def total_macs(self) -> float:
        """Multiply-accumulates per inference."""
        return self._per("macs")

    @property
    def total_mask_ops(self) -> float:
        return self._per("mask_ops")

    @property
    def total_neuron_updates(self) -> float:
        return self._per("neuron_updates")

    @property
    def total_spikes(self) -> float:
        return self._per("spikes")

    @property
    def total_attention_sops(self) -> float:
        """The part of ``total_sops`` spent in spiking attention products (``ssa:*``, ``sdsa:*`` rows)."""
        return sum(r.sops for r in self.layers if r.kind.startswith(("ssa", "sdsa"))) / self.batch_size

    @property
    def total_rate_sops(self) -> float:
        """SOPs under the papers' convention ``sum(firing_rate * T * FLOPs)`` per inference."""
        return self._per("rate_sops", neurons=False)

    @property
    def ann_flops(self) -> float:
        """MACs of one pass of the ANN of the same architecture (sum of ``flops`` over non-neuron rows)."""
        return float(sum(r.flops for r in self.layers if not r.is_neuron))

    def counts(self) -> OpCounts:
        """Per-inference counts, the input of every hardware model."""
        return OpCounts(
            sops=self.total_sops,
            macs=self.total_macs,
            neuron_updates=self.total_neuron_updates,
            spikes=self.total_spikes,
            ann_flops=self.ann_flops,
            attention_sops=self.total_attention_sops,
        )

    def layer(self, name: str) -> LayerStats:
        """The row called ``name``; ``KeyError`` lists the names otherwise."""
        for r in self.layers:
            if r.name == name:
                return r
        raise KeyError(f"no layer {name!r}; layers: {[r.name for r in self.layers]}")

    @property
    def mac_layers(self) -> list[LayerStats]:
        """Rows charged MACs, each with its ``reason``."""
        return [r for r in self.layers if r.macs]

    # -- energy ---------------------------------------------------------------------------------------------------
    def add_measurement(self, hardware: str, joules_per_inference: float) -> None:
        """Store a measured figure (e.g. from ``GpuMeasured.measure``) under the hardware model's name."""
        self.measurements[hardware] = float(joules_per_inference)

    def energy_lines(self, hardware: str | HardwareModel) -> list[EnergyLine]:
        """The terms of ``energy(hardware)``, each with its constant, source and assumption."""
        hw = resolve_hardware(hardware)
        if hw.measured:
            if hw.name not in self.measurements:
                raise ValueError(
                    f"{hw.name} is measured, not modelled, and this report holds no measurement: run "
                    f"get_hardware({hw.name!r}).measure(model, x) on a CUDA machine and report.add_measurement(...)"
                )
            j = self.measurements[hw.name]
            return [EnergyLine(hw.name, "measured (NVML total energy)", 1.0, j * 1e12, j, "NVML", False, "")]
        return hw.lines(self.counts())

    def energy(self, hardware: str | HardwareModel) -> float:
        """Joules per inference on ``hardware`` (a name in ``HARDWARE_MODELS`` or a model instance)."""
        return sum(line.joules for line in self.energy_lines(hardware))

    def ann_energy_lines(self, hardware: str | HardwareModel) -> list[EnergyLine]:
        return resolve_hardware(hardware).ann_lines(self.counts())

    def ann_energy(self, hardware: str | HardwareModel) -> float:
        """Joules per inference of the ANN of the same architecture (``ann_flops`` MACs) on ``hardware``."""
        return sum(line.joules for line in self.ann_energy_lines(hardware))

    def energy_ratio(self, hardware: str | HardwareModel) -> float:
        """``ann_energy / energy``: how many times less energy the spiking network uses (``inf`` if it uses none)."""
        snn = self.energy(hardware)
        ann = self.ann_energy(hardware)
        return math.inf if snn == 0 else ann / snn

    def _energy_summary(self, name: str | HardwareModel) -> dict[str, Any]:
        hw = resolve_hardware(name)
        out: dict[str, Any] = {
            "description": hw.description,
            "assumed": hw.is_assumed,
            "params": hw.params(),
            "joules": self.energy(hw),
            "lines": [line.to_dict() for line in self.energy_lines(hw)],
        }
        try:
            ann = self.ann_energy(hw)
            out["ann_joules"] = ann
            out["ann_lines"] = [line.to_dict() for line in self.ann_energy_lines(hw)]
            out["ratio"] = ann / out["joules"] if out["joules"] else None
        except ValueError as e:
            out["ann_joules"], out["ratio"], out["ann_note"] = None, None, str(e)
        return out

    def _hardware_names(self, hardware: tuple[str | HardwareModel, ...] | list | None) -> list[str | HardwareModel]:
        if hardware is None:
            return [*DEFAULT_HARDWARE, *[m for m in self.measurements if m not in DEFAULT_HARDWARE]]
        return list(hardware)

    # -- output ---------------------------------------------------------------------------------------------------
    def to_dict(self, hardware: tuple[str | HardwareModel, ...] | list | None = None) -> dict[str, Any]:
        """JSON-ready report: conventions, per-inference totals, per-layer counts (batch totals), energy by hardware.

        Args:
            hardware: names or models to cost (default: every modelled hardware plus any measurement).
        """
        hws = self._hardware_names(hardware)
        return {
            "model": self.model_name,
            "timesteps": self.timesteps,
            "batch_size": self.batch_size,
            "integer_inputs": self.integer_inputs,
            "conventions": dict(CONVENTIONS),
            "totals_per_inference": {
                "sops": self.total_sops,
                "attention_sops": self.total_attention_sops,
                "rate_sops": self.total_rate_sops,
                "macs": self.total_macs,
                "mask_ops": self.total_mask_ops,
                "neuron_updates": self.total_neuron_updates,
                "spikes": self.total_spikes,
                "ann_flops": self.ann_flops,
            },
            "mac_layers": [{"name": r.name, "reason": r.reason} for r in self.mac_layers],
            "layers_note": "layer counts are totals over batch_size images and all time steps; flops is per step "
            "and sample",
            "layers": [r.to_dict() for r in self.layers],
            "energy": {(h if isinstance(h, str) else h.name): self._energy_summary(h) for h in hws},
            "measurements": dict(self.measurements),
        }

    def table(self, hardware: tuple[str | HardwareModel, ...] | list | None = None):
        """A ``rich.table.Table``: one row per layer (per inference), totals, then energy per hardware with the ANN.

        Args:
            hardware: names or models to cost (default: every modelled hardware plus any measurement).
        """
        from rich.table import Table

        b = self.batch_size
        table = Table(
            title=f"{self.model_name}: T={self.timesteps}, per inference (mean of {b} image{'s' if b != 1 else ''})",
            caption="SOPs: spike-driven accumulates; MACs: multiply-accumulates; rate: input spike rate "
            "(neurons: output rate); energy ratio = ANN / SNN",
        )
        for col, justify in [
            ("layer", "left"),
            ("kind", "left"),
            ("input", "left"),
            ("rate", "right"),
            ("FLOPs/step", "right"),
            ("SOPs", "right"),
            ("MACs", "right"),
            ("updates", "right"),
            ("spikes", "right"),
            ("reason", "left"),
        ]:
            table.add_column(col, justify=justify, no_wrap=col != "reason")  # type: ignore[arg-type]
        for r in self.layers:
            rate = r.firing_rate
            table.add_row(
                r.name,
                r.kind,
                r.input_kind,
                "" if rate is None else f"{rate:.3f}",
                "" if r.is_neuron else _si(r.flops),
                _si(r.sops / b) if r.sops else "",
                _si(r.macs / b) if r.macs else "",
                _si(r.neuron_updates / b) if r.is_neuron else "",
                _si(r.spikes / b) if r.is_neuron else "",
                r.reason,
            )
        table.add_section()
        table.add_row(
            "total",
            "",
            "",
            "",
            _si(self.ann_flops),
            _si(self.total_sops),
            _si(self.total_macs),
            _si(self.total_neuron_updates),
            _si(self.total_spikes),
            f"ANN of the same architecture: {_si(self.ann_flops)} MACs",
        )
        for h in self._hardware_names(hardware):
            hw = resolve_hardware(h)
            try:
                snn = self.energy(hw)
            except ValueError as e:
                table.add_row(f"energy: {hw.name}", "", "", "", "", "", "", "", "", str(e))
                continue
            text = f"SNN {_joules(snn)}"
            try:
                ann = self.ann_energy(hw)
                ratio = f"ANN/SNN {ann / snn:.3g}x" if snn else "no SNN energy"
                text += f" | ANN {_joules(ann)} | {ratio}"
            except ValueError:
                pass
            if hw.is_assumed:
                text += " | ASSUMED constants"
            table.add_row(f"energy: {hw.name}", "", "", "", "", "", "", "", "", text)
        return table

    def to_text(self, hardware: tuple[str | HardwareModel, ...] | list | None = None, width: int = 200) -> str:
        """``table()`` rendered as plain text."""
        from rich.console import Console

        console = Console(width=width, record=True, file=_NullFile(), color_system=None)
        console.print(self.table(hardware))
        return console.export_text()


class _NullFile:
    def write(self, _s: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def _si(n: float) -> str:
    """``1234567 -> '1.23M'``."""
    n = float(n)
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.4g}" if n != int(n) else str(int(n))


def _joules(j: float) -> str:
    """``0.0115 -> '11.5 mJ'``."""
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9)):
        if abs(j) >= scale:
            return f"{j / scale:.4g} {unit}"
    return f"{j / 1e-12:.4g} pJ"
