"""Energy models: one dataclass per chip, each constant cited where it is defined.

A model turns the per-inference operation counts of a profile (:class:`OpCounts`) into :class:`EnergyLine` s, one per
kind of operation, in joules. Models whose constants are not public (``loihi2``, ``spinnaker2``) take them as
constructor parameters, set ``assumed=True`` and every line they compute carries the assumption text.

Registry: ``HARDWARE_MODELS`` (name -> class) and ``get_hardware(name, **params)``.

``gpu-measured`` is not a model but a measurement: :meth:`GpuMeasured.measure` reads NVML's total-energy counter
around repeated runs of the model on a CUDA device (see ``docs/energy.md``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = [
    "HARDWARE_MODELS",
    "CMOS45nm",
    "EnergyLine",
    "GpuMeasured",
    "HardwareModel",
    "Loihi",
    "Loihi2",
    "OpCounts",
    "SpiNNaker2",
    "get_hardware",
    "resolve_hardware",
]

PJ = 1e-12  # joules per picojoule

# Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm, 0.9 V:
# 32-bit float add 0.9 pJ, 32-bit float multiply 3.7 pJ (MAC = 4.6 pJ); 64-bit read of an 8 KB SRAM 10 pJ.
HOROWITZ_FP32_ADD_PJ = 0.9
HOROWITZ_FP32_MAC_PJ = 4.6
HOROWITZ_SRAM_8KB_READ_PJ = 10.0
HOROWITZ_SOURCE = "Horowitz, ISSCC 2014 (45 nm, 32-bit float)"

# Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE Micro 38(1), 2018, Table 1
# (pre-silicon figures at 0.75 V): 23.6 pJ minimum per synaptic spike op, 52 pJ inactive / 81 pJ active neuron update.
DAVIES_SYNOP_PJ = 23.6
DAVIES_UPDATE_INACTIVE_PJ = 52.0
DAVIES_UPDATE_ACTIVE_PJ = 81.0
DAVIES_SOURCE = "Davies et al., IEEE Micro 2018, Table 1"

_ACTIVE_NOTE = (
    "an update counts as active when the neuron fires in that step (our reading; Davies et al. do not define 'active')"
)


@dataclass(frozen=True)
class OpCounts:
    """Operation counts of one inference (one sample, all time steps).

    Attributes:
        sops: accumulate operations driven by spike events (synaptic operations), including spiking attention.
        macs: multiply-accumulates (layers whose input is not spikes, e.g. the image-encoding conv).
        neuron_updates: neuron state updates (one per neuron per time step).
        spikes: spikes emitted (number of neuron updates that fired).
        ann_flops: MACs of the ANN of the same architecture (one pass, no time dimension).
        attention_sops: the part of ``sops`` spent in products of two spike tensors (spiking attention).
    """

    sops: float
    macs: float
    neuron_updates: float
    spikes: float
    ann_flops: float
    attention_sops: float = 0.0


@dataclass(frozen=True)
class EnergyLine:
    """One term of an energy estimate: ``joules = count * pj_per_op * 1e-12``.

    Attributes:
        hardware: the hardware model's name.
        component: what is counted (``"AC (synaptic op)"``, ``"MAC"``, ...).
        count: operations per inference.
        pj_per_op: energy per operation in picojoules.
        joules: energy per inference in joules.
        source: where ``pj_per_op`` comes from.
        assumed: the constant is an assumption, not a published figure.
        note: the assumption text (when ``assumed``) or how the count is read.
    """

    hardware: str
    component: str
    count: float
    pj_per_op: float
    joules: float
    source: str
    assumed: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "count": self.count,
            "pj_per_op": self.pj_per_op,
            "joules": self.joules,
            "source": self.source,
            "assumed": self.assumed,
            "note": self.note,
        }


def _line(hw: str, component: str, count: float, pj: float, source: str, assumed: bool, note: str) -> EnergyLine:
    return EnergyLine(hw, component, float(count), float(pj), float(count) * pj * PJ, source, assumed, note)


@dataclass(frozen=True)
class HardwareModel:
    """Base of the energy models: ``lines(counts)`` per inference; ``energy`` is their sum in joules."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    measured: ClassVar[bool] = False

    @property
    def is_assumed(self) -> bool:
        """Whether any constant of this model is an assumption."""
        return bool(getattr(self, "assumed", False))

    def lines(self, counts: OpCounts) -> list[EnergyLine]:
        """Energy terms of one inference of the spiking network."""
        raise NotImplementedError

    def ann_lines(self, counts: OpCounts) -> list[EnergyLine]:
        """Energy terms of one inference of the ANN of the same architecture (``counts.ann_flops`` MACs)."""
        raise NotImplementedError

    def energy(self, counts: OpCounts) -> float:
        """Joules per inference of the spiking network."""
        return sum(line.joules for line in self.lines(counts))

    def ann_energy(self, counts: OpCounts) -> float:
        """Joules per inference of the ANN baseline."""
        return sum(line.joules for line in self.ann_lines(counts))

    def params(self) -> dict[str, Any]:
        """The constructor parameters (JSON-ready)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class CMOS45nm(HardwareModel):
    """The formula of Spikformer and its successors: ``E = E_MAC * MACs + E_AC * SOPs``.

    Neuron updates are not charged (the papers' formula does not). The ANN of the same architecture costs
    ``E_MAC * FLOPs`` (FLOPs = MACs of one pass).

    Args:
        e_mac_pj: energy of one 32-bit float multiply-accumulate, pJ. 4.6 = 3.7 (multiply) + 0.9 (add),
            Horowitz, ISSCC 2014, 45 nm.
        e_ac_pj: energy of one 32-bit float accumulate, pJ. 0.9, Horowitz, ISSCC 2014, 45 nm.
    """

    name: ClassVar[str] = "cmos45nm"
    description: ClassVar[str] = "45 nm CMOS, E_MAC 4.6 pJ, E_AC 0.9 pJ (Horowitz, ISSCC 2014)"

    e_mac_pj: float = HOROWITZ_FP32_MAC_PJ
    e_ac_pj: float = HOROWITZ_FP32_ADD_PJ

    def lines(self, counts: OpCounts) -> list[EnergyLine]:
        return [
            _line(self.name, "MAC", counts.macs, self.e_mac_pj, HOROWITZ_SOURCE, False, ""),
            _line(self.name, "AC (synaptic op)", counts.sops, self.e_ac_pj, HOROWITZ_SOURCE, False, ""),
        ]

    def ann_lines(self, counts: OpCounts) -> list[EnergyLine]:
        return [_line(self.name, "ANN MAC", counts.ann_flops, self.e_mac_pj, HOROWITZ_SOURCE, False, "")]


@dataclass(frozen=True)
class Loihi(HardwareModel):
    """Intel Loihi (1st generation): synaptic ops and neuron updates at the published per-op energies.

    Loihi's cores cannot multiply real-valued inputs: layers charged as MACs (the image-encoding conv) are assumed to
    run on the host, at ``host_mac_pj`` each; an ANN cannot run on the cores at all, so its MACs are costed at
    ``host_mac_pj`` too. Static power and spike routing (1.7 pJ within a tile, 3-4 pJ per hop) are not charged.

    Args:
        e_sop_pj: energy per synaptic spike operation, pJ. 23.6 (minimum), Davies et al., IEEE Micro 2018.
        e_update_active_pj: energy of an active neuron update, pJ. 81, Davies et al. 2018.
        e_update_inactive_pj: energy of an inactive neuron update, pJ. 52, Davies et al. 2018.
        host_mac_pj: energy of one MAC on the host, pJ (assumption): 4.6, the 45 nm float MAC of Horowitz 2014.
    """

    name: ClassVar[str] = "loihi"
    description: ClassVar[str] = "Intel Loihi: 23.6 pJ/SOP, 81/52 pJ active/inactive update (Davies et al. 2018)"

    e_sop_pj: float = DAVIES_SYNOP_PJ
    e_update_active_pj: float = DAVIES_UPDATE_ACTIVE_PJ
    e_update_inactive_pj: float = DAVIES_UPDATE_INACTIVE_PJ
    host_mac_pj: float = HOROWITZ_FP32_MAC_PJ

    _source: ClassVar[str] = DAVIES_SOURCE
    _host_note: ClassVar[str] = (
        "assumed: Loihi cores do not multiply real-valued inputs; these layers run on the host at the 45 nm float "
        "MAC energy (Horowitz, ISSCC 2014)"
    )

    _attention_note: ClassVar[str] = (
        "assumed: the accumulates of spiking attention (a product of two spike tensors) are charged as synaptic ops; "
        "Loihi has no primitive for them (NIR neither), so in practice they run on the embedded x86 cores or the host"
    )

    def _chip_assumption(self) -> str:
        return ""

    def lines(self, counts: OpCounts) -> list[EnergyLine]:
        assumed, text = self.is_assumed, self._chip_assumption()
        inactive = counts.neuron_updates - counts.spikes

        def note(extra: str = "") -> str:
            return "; ".join(t for t in (text, extra) if t)

        return [
            _line(
                self.name,
                "synaptic op",
                counts.sops - counts.attention_sops,
                self.e_sop_pj,
                self._source,
                assumed,
                note(),
            ),
            _line(
                self.name,
                "attention accumulate",
                counts.attention_sops,
                self.e_sop_pj,
                self._source,
                True,
                note(self._attention_note),
            ),
            _line(
                self.name,
                "neuron update (active)",
                counts.spikes,
                self.e_update_active_pj,
                self._source,
                assumed,
                note(_ACTIVE_NOTE),
            ),
            _line(
                self.name,
                "neuron update (inactive)",
                inactive,
                self.e_update_inactive_pj,
                self._source,
                assumed,
                note(_ACTIVE_NOTE),
            ),
            _line(self.name, "host MAC", counts.macs, self.host_mac_pj, HOROWITZ_SOURCE, True, note(self._host_note)),
        ]

    def ann_lines(self, counts: OpCounts) -> list[EnergyLine]:
        return [
            _line(
                self.name,
                "ANN MAC (host)",
                counts.ann_flops,
                self.host_mac_pj,
                HOROWITZ_SOURCE,
                True,
                "assumed: an ANN cannot run on the neuromorphic cores; its MACs are costed on the host",
            )
        ]


LOIHI2_ASSUMPTION = (
    "assumed: Intel has not published Loihi 2's per-operation energy (shared with research members only); the "
    "defaults are Loihi 1's pre-silicon figures (Davies et al., IEEE Micro 2018): pass measured values if you have them"
)


@dataclass(frozen=True)
class Loihi2(Loihi):
    """Intel Loihi 2: the Loihi cost structure with assumed constants (per-op energy is not public).

    The defaults equal Loihi 1's figures (Davies et al., IEEE Micro 2018): Loihi 2 is a smaller process (Intel 4)
    and is likely cheaper per operation, but no public figure says by how much. Graded spikes are not modelled: an
    integer input of value n is charged as n synaptic ops, as on Loihi 1.

    Args:
        e_sop_pj: energy per synaptic op, pJ (assumed; default 23.6 from Loihi 1).
        e_update_active_pj: active neuron update, pJ (assumed; default 81 from Loihi 1).
        e_update_inactive_pj: inactive neuron update, pJ (assumed; default 52 from Loihi 1).
        host_mac_pj: MAC on the host, pJ (assumed; 4.6, Horowitz ISSCC 2014).
        assumed: True while any constant is not a measured Loihi 2 figure.
        assumption: the text every line computed from these constants carries.
    """

    name: ClassVar[str] = "loihi2"
    description: ClassVar[str] = "Intel Loihi 2 (assumed: per-op energy not public; defaults = Loihi 1)"

    assumed: bool = True
    assumption: str = LOIHI2_ASSUMPTION

    _source: ClassVar[str] = "assumed (defaults: Davies et al., IEEE Micro 2018, Loihi 1)"

    def _chip_assumption(self) -> str:
        return self.assumption if self.assumed else ""


SPINNAKER2_ASSUMPTION = (
    "assumed: no published SpiNNaker2 energy per synaptic event was found (Hoppner et al. 2021 and Vogginger et al. "
    "give the architecture: 152 ARM Cortex-M4F PEs with MAC accelerators and 128 KB SRAM each, 22 nm FDSOI); the "
    "defaults are order-of-magnitude placeholders built from Horowitz's 45 nm figures (ISSCC 2014), not scaled to 22 nm"
)


@dataclass(frozen=True)
class SpiNNaker2(HardwareModel):
    """SpiNNaker2 with assumed per-operation energies (no published figure per synaptic event).

    Placeholders, each from Horowitz, ISSCC 2014 (45 nm), not scaled to SpiNNaker2's 22 nm FDSOI:

    - a synaptic event on a processing element reads a weight from local SRAM and adds it:
      ``e_sop_pj = 10 (64-bit read of an 8 KB SRAM) + 0.9 (32-bit float add) = 10.9 pJ``;
    - a neuron update reads and writes its state: ``e_update_pj = 2 * 10 = 20 pJ`` (arithmetic neglected);
    - a MAC of a non-spiking layer runs on the PE's MAC accelerator: ``e_mac_pj = 4.6 pJ`` (45 nm float MAC).

    Args:
        e_sop_pj: energy per synaptic event, pJ (assumed).
        e_update_pj: energy per neuron update, pJ (assumed).
        e_mac_pj: energy per MAC, pJ (assumed); also prices the ANN baseline.
        assumed: True while any constant is a placeholder.
        assumption: the text every line computed from these constants carries.
    """

    name: ClassVar[str] = "spinnaker2"
    description: ClassVar[str] = "SpiNNaker2 (assumed: placeholders from Horowitz 2014 figures)"

    e_sop_pj: float = HOROWITZ_SRAM_8KB_READ_PJ + HOROWITZ_FP32_ADD_PJ
    e_update_pj: float = 2 * HOROWITZ_SRAM_8KB_READ_PJ
    e_mac_pj: float = HOROWITZ_FP32_MAC_PJ
    assumed: bool = True
    assumption: str = SPINNAKER2_ASSUMPTION

    def lines(self, counts: OpCounts) -> list[EnergyLine]:
        src, a, text = "assumed (placeholders from Horowitz, ISSCC 2014)", self.assumed, self.assumption
        note = text if a else ""
        return [
            _line(self.name, "synaptic event", counts.sops, self.e_sop_pj, src, a, note),
            _line(self.name, "neuron update", counts.neuron_updates, self.e_update_pj, src, a, note),
            _line(self.name, "MAC", counts.macs, self.e_mac_pj, src, a, note),
        ]

    def ann_lines(self, counts: OpCounts) -> list[EnergyLine]:
        src = "assumed (placeholders from Horowitz, ISSCC 2014)"
        note = self.assumption if self.assumed else ""
        return [_line(self.name, "ANN MAC", counts.ann_flops, self.e_mac_pj, src, self.assumed, note)]


@dataclass(frozen=True)
class GpuMeasured(HardwareModel):
    """Measured energy on a CUDA GPU: NVML's total-energy counter read around repeated runs.

    ``measure(model, x)`` runs ``warmup`` passes, then at least ``runs`` passes and at least ``min_seconds`` of them
    (the counter advances in coarse steps), and divides the counter's difference (mJ, whole board, idle power
    included) by the number of images run. It never estimates: without ``pynvml`` (package ``nvidia-ml-py``), without
    CUDA, or when the counter is unsupported or does not advance, it raises ``RuntimeError`` saying why.

    Args:
        device: the CUDA device, e.g. ``"cuda"`` or ``"cuda:1"``.
        runs: minimum number of timed passes.
        warmup: untimed passes first.
        min_seconds: minimum timed duration in seconds.
    """

    name: ClassVar[str] = "gpu-measured"
    description: ClassVar[str] = "measured: NVML total-energy counter on a CUDA GPU (whole board)"
    measured: ClassVar[bool] = True

    device: str = "cuda"
    runs: int = 20
    warmup: int = 3
    min_seconds: float = 1.0

    def lines(self, counts: OpCounts) -> list[EnergyLine]:
        raise ValueError(
            "gpu-measured is a measurement, not a per-operation model: call GpuMeasured().measure(model, x) and "
            "store the result with report.add_measurement('gpu-measured', joules)"
        )

    def ann_lines(self, counts: OpCounts) -> list[EnergyLine]:
        raise ValueError("gpu-measured has no ANN baseline: no ANN was run on the GPU")

    def params(self) -> dict[str, Any]:
        return {"device": self.device, "runs": self.runs, "warmup": self.warmup, "min_seconds": self.min_seconds}

    def measure(self, model: nn.Module, x: torch.Tensor) -> float:
        """Joules per inference (per image of ``x``), read from NVML's total-energy counter.

        Args:
            model: the model; a copy is moved to ``device`` when its parameters are elsewhere.
            x: a batch of inputs ``[B, C, H, W]`` (or ``[T, B, C, H, W]``).

        Raises:
            RuntimeError: ``pynvml`` missing, CUDA unavailable, or the counter unsupported or not advancing.
        """
        try:
            import pynvml
        except ImportError as e:
            raise RuntimeError(
                "gpu-measured reads NVML's total-energy counter, but pynvml is not installed "
                "(pip install nvidia-ml-py); no figure was produced"
            ) from e
        if not torch.cuda.is_available():
            raise RuntimeError(
                "gpu-measured needs a CUDA GPU, but torch.cuda.is_available() is False (no GPU visible, or torch "
                f"{torch.__version__} was built without CUDA); no figure was produced"
            )
        device = torch.device(self.device)
        if device.type != "cuda":
            raise RuntimeError(f"gpu-measured needs a CUDA device such as 'cuda:0'; got {self.device!r}")
        try:
            pynvml.nvmlInit()
        except Exception as e:  # noqa: BLE001 - NVML raises its own error classes
            raise RuntimeError(f"gpu-measured could not initialise NVML: {e}") from e
        try:
            handle = _nvml_handle(pynvml, device)
            params = list(model.parameters())
            if not params or params[0].device != device:
                model = copy.deepcopy(model).to(device)
            model.eval()
            x = x.to(device)
            batch = x.shape[1] if x.ndim == 5 else x.shape[0]
            with torch.inference_mode():
                for _ in range(self.warmup):
                    model(x)
                torch.cuda.synchronize(device)
                try:
                    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # mJ since the driver loaded
                except Exception as e:  # noqa: BLE001
                    raise RuntimeError(f"NVML's total-energy counter is not available on this GPU: {e}") from e
                t0, n = time.perf_counter(), 0
                while n < self.runs or time.perf_counter() - t0 < self.min_seconds:
                    model(x)
                    n += 1
                    if n % 8 == 0:
                        torch.cuda.synchronize(device)
                torch.cuda.synchronize(device)
                e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        finally:
            try:
                pynvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
        if e1 <= e0:
            raise RuntimeError(
                f"NVML's energy counter did not advance over {n} runs; raise min_seconds (now {self.min_seconds})"
            )
        return (e1 - e0) * 1e-3 / (n * batch)


def _nvml_handle(pynvml: Any, device: torch.device) -> Any:
    """The NVML handle of a torch CUDA device: by UUID (robust to CUDA_VISIBLE_DEVICES), else by index."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        text = str(uuid)
        for candidate in (text, f"GPU-{text}"):
            try:
                return pynvml.nvmlDeviceGetHandleByUUID(candidate)
            except Exception:  # noqa: BLE001
                continue
    return pynvml.nvmlDeviceGetHandleByIndex(index)


HARDWARE_MODELS: dict[str, type[HardwareModel]] = {
    CMOS45nm.name: CMOS45nm,
    Loihi.name: Loihi,
    Loihi2.name: Loihi2,
    SpiNNaker2.name: SpiNNaker2,
    GpuMeasured.name: GpuMeasured,
}


def get_hardware(name: str, **params: Any) -> HardwareModel:
    """Build a hardware model by name, e.g. ``get_hardware("loihi2", e_sop_pj=10.0)``.

    Raises:
        ValueError: unknown name (the message lists the registered ones) or unknown parameter.
    """
    if not isinstance(name, str) or name not in HARDWARE_MODELS:
        raise ValueError(f"unknown hardware model {name!r}; registered: {', '.join(HARDWARE_MODELS)}")
    cls = HARDWARE_MODELS[name]
    accepted = {k for k in cls.__dataclass_fields__ if not k.startswith("_")}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for hardware {name!r}; accepted: {sorted(accepted)}")
    return cls(**params)


def resolve_hardware(hardware: str | HardwareModel) -> HardwareModel:
    """A model instance from a name (default parameters) or an instance (returned as is)."""
    if isinstance(hardware, HardwareModel):
        return hardware
    return get_hardware(hardware)
