"""Operation and spike counters: forward hooks that read (never change) the tensors of one run.

``profile(model, x)`` runs the model once under an ``OpCounter`` and returns an ``EnergyReport``. What is counted
(the rules are in ``spikeformer.energy.report.CONVENTIONS`` and ``docs/energy.md``):

- ``nn.Linear`` and ``nn.Conv2d``: dense MACs (``flops``), and either SOPs = exact (input event, synapse) pairs when
  the input tensor is spikes, or MACs = dense MACs when it is not. Binarity is read from the tensor itself.
- ``BaseNeuron``: neuron updates (input elements) and spikes (nonzero outputs).
- Spikformer's ``SpikingSelfAttention``: ``K^T V`` and ``Q (K^T V)`` from the Q, K, V neurons' spikes.
- ``SpikeDrivenSelfAttention``: the ``K * V`` mask with its token sum, and the ``Q * kv`` mask.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from spikeformer.energy.report import EnergyReport, LayerStats
from spikeformer.models.spike_driven import SpikeDrivenSelfAttention
from spikeformer.models.spikformer import SpikingSelfAttention
from spikeformer.nn.neuron import BaseNeuron

__all__ = ["INTEGER_INPUT_RULES", "OpCounter", "classify_input", "profile"]

INTEGER_INPUT_RULES = ("accumulate", "mac")


class InputInfo(NamedTuple):
    """What a tensor is: ``kind`` (``binary``, ``count`` or ``real``), sizes and event count."""

    kind: str
    elements: int
    events: int
    nonzero: int
    max_abs: float


def classify_input(x: torch.Tensor) -> InputInfo:
    """Classify ``x`` by its values: ``binary`` (all 0 or 1), ``count`` (all integers) or ``real``.

    ``events`` is the number of spikes the tensor carries: its nonzero count when binary, ``sum(|x|)`` when integer
    (a value n is n spikes), 0 when real.
    """
    x = x.detach()
    if not x.is_floating_point():
        x = x.float()
    elements = x.numel()
    nonzero = int(torch.count_nonzero(x))
    if elements == 0 or bool(torch.logical_or(x == 0, x == 1).all()):
        return InputInfo("binary", elements, nonzero, nonzero, 1.0 if nonzero else 0.0)
    a = x.abs()
    if bool(torch.isfinite(x).all()) and bool((x == torch.round(x)).all()):
        return InputInfo("count", elements, int(a.sum(dtype=torch.float64).item()), nonzero, float(a.max()))
    return InputInfo("real", elements, 0, nonzero, float(a.max()))


def _conv2d_event_ops(m: nn.Conv2d, events: torch.Tensor) -> int:
    """Exact (input event, synapse) pairs of a conv: every output tap that reads an event, times ``Cout / groups``.

    ``events`` holds the event count of each input element (``[N, C, H, W]`` or ``[C, H, W]``). Summing it over
    channels and convolving with a ones kernel (same stride, padding, dilation) counts, per output position, the
    events in its receptive field; each such event feeds ``Cout / groups`` output channels.
    """
    e = events.to(torch.float64)
    if e.ndim == 3:
        e = e.unsqueeze(0)
    s = e.sum(1, keepdim=True)  # [N, C, H, W] -> [N, 1, H, W]
    padding: Any = m.padding
    if m.padding_mode != "zeros":
        s = F.pad(s, m._reversed_padding_repeated_twice, mode=m.padding_mode)
        padding = 0
    ones = torch.ones(1, 1, *m.kernel_size, dtype=torch.float64, device=s.device)
    taps = F.conv2d(s, ones, stride=m.stride, padding=padding, dilation=m.dilation)
    return int(round(taps.sum().item())) * (m.out_channels // m.groups)


class OpCounter:
    """Context manager that hooks every counted module of ``model`` and collects ``LayerStats``.

    Example::

        with OpCounter(model) as counter:
            y = model(x)
        report = counter.report(timesteps=4, batch_size=len(x))

    Hooks only read tensors; the model's outputs are bit-identical to an unhooked run.

    Args:
        model: any ``nn.Module``.
        integer_inputs: ``"accumulate"`` (an integer input value n is n accumulates per synapse) or ``"mac"``
            (integer non-binary inputs are charged dense MACs).
    """

    def __init__(self, model: nn.Module, integer_inputs: str = "accumulate") -> None:
        if integer_inputs not in INTEGER_INPUT_RULES:
            raise ValueError(f"integer_inputs must be one of {INTEGER_INPUT_RULES}, got {integer_inputs!r}")
        self.model = model
        self.integer_inputs = integer_inputs
        self.rows: dict[str, LayerStats] = {}
        self._reasons: dict[str, dict[str, None]] = {}
        self._kinds: dict[str, set[str]] = {}
        self._handles: list[Any] = []
        self._roles: dict[nn.Module, tuple[str, nn.Module, str]] = {}
        self._stash: dict[str, dict[str, torch.Tensor]] = {}

    # -- hook management ------------------------------------------------------------------------------------------
    def __enter__(self) -> OpCounter:
        root = type(self.model).__name__.lower()
        for name, m in self.model.named_modules():
            name = name or root
            # the runtime's fast layers (event-driven, int8) stand for the nn.Linear / nn.Conv2d they replaced
            base = getattr(m, "dense_equivalent", m)
            if isinstance(base, nn.Conv2d):
                self._handles.append(m.register_forward_hook(self._conv_hook(name, base)))
            elif isinstance(base, nn.Linear):
                self._handles.append(m.register_forward_hook(self._linear_hook(name, base)))
            elif isinstance(m, BaseNeuron):
                self._handles.append(m.register_forward_hook(self._neuron_hook(name)))
            if isinstance(m, SpikingSelfAttention):
                for role in ("q", "k", "v"):
                    self._roles[getattr(m, f"{role}_neuron")] = (name, m, role)
            elif isinstance(m, SpikeDrivenSelfAttention):
                for role in ("q", "k", "v", "kv"):
                    self._roles[getattr(m, f"{role}_neuron")] = (name, m, role)
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._stash.clear()

    # -- bookkeeping ----------------------------------------------------------------------------------------------
    def _row(self, name: str, kind: str) -> LayerStats:
        if name not in self.rows:
            self.rows[name] = LayerStats(name=name, kind=kind)
            self._reasons[name] = {}
            self._kinds[name] = set()
        row = self.rows[name]
        row.calls += 1
        return row

    def _add_input(self, row: LayerStats, info: InputInfo) -> None:
        row.input_elements += info.elements
        row.events += info.events
        row.nonzero += info.nonzero
        row.max_input = max(row.max_input, info.max_abs)
        self._kinds[row.name].add(info.kind)

    def _spike_like(self, info: InputInfo) -> bool:
        return info.kind == "binary" or (info.kind == "count" and self.integer_inputs == "accumulate")

    def _why(self, info: InputInfo, what: str) -> str:
        """The reason text for charging a weight layer fed by ``info``."""
        if info.kind == "binary":
            return f"binary spikes: {what}"
        if info.kind == "count":
            top = f"{info.max_abs:g}"
            if self.integer_inputs == "accumulate":
                return f"integer spike counts (max {top}): value n = n ACs; {what}"
            return f"integer input (max {top}) with integer_inputs='mac': dense MACs"
        return "real-valued input: dense MACs every step"

    def _charge(self, row: LayerStats, info: InputInfo, event_ops: int, dense: int, what: str) -> None:
        self._add_input(row, info)
        row.dense_macs += dense
        if self._spike_like(info):
            row.sops += event_ops
        else:
            row.macs += dense
        self._reasons[row.name][self._why(info, what)] = None

    # -- hooks ----------------------------------------------------------------------------------------------------
    def _linear_hook(self, name: str, m: nn.Linear):
        def hook(_module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0]
            info = classify_input(x)
            row = self._row(name, "linear")
            events_ops = info.events * m.out_features
            self._charge(row, info, events_ops, x.numel() * m.out_features, "events x out_features ACs")

        return hook

    def _conv_hook(self, name: str, m: nn.Conv2d):
        def hook(_module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0]
            info = classify_input(x)
            row = self._row(name, "conv2d")
            kh, kw = m.kernel_size
            dense = output.numel() * (m.in_channels // m.groups) * kh * kw
            ops = _conv2d_event_ops(m, x.detach().abs()) if self._spike_like(info) else 0
            self._charge(row, info, ops, dense, "exact event x reached-output ACs")

        return hook

    def _neuron_hook(self, name: str):
        def hook(m: BaseNeuron, inputs: tuple, output: Any) -> None:
            x = inputs[0]
            s = output[0] if isinstance(output, tuple) else output
            row = self._row(name, f"neuron:{type(m).__name__.lower()}")
            row.neuron_updates += x.numel()
            row.spikes += int(torch.count_nonzero(s))
            if m in self._roles:
                attn_name, attn, role = self._roles[m]
                stash = self._stash.setdefault(attn_name, {})
                stash[role] = s.detach()
                if isinstance(attn, SpikingSelfAttention):
                    self._maybe_ssa(attn_name, attn, stash)
                else:
                    self._maybe_sdsa(attn_name, stash)

        return hook

    # -- attention ------------------------------------------------------------------------------------------------
    def _maybe_ssa(self, name: str, m: SpikingSelfAttention, stash: dict[str, torch.Tensor]) -> None:
        """``Q (K^T V)`` once Q, K and V (spikes, [T, B, N, D] or head-split [T, B, H, N, D/H]) are all seen."""
        if not all(r in stash for r in ("q", "k", "v")):
            return
        q, k, v = stash.pop("q"), stash.pop("k"), stash.pop("v")
        d = q.shape[-1] if q.dim() == 5 else q.shape[-1] // m.num_heads  # head width
        # K^T V: per head and step, kv[i, j] = sum_n k[n, i] v[n, j]; dense N*d*d = k.numel() * d over all heads.
        row = self._row(f"{name}.kv", "ssa:k^T v")
        ik, iv = classify_input(k), classify_input(v)
        driver, label = (ik, "K") if self._spike_like(ik) else (iv, "V")
        if not self._spike_like(driver):
            driver, label = ik, "K"
        self._charge(row, driver, driver.events * d, k.numel() * d, f"each {label} spike adds a d-wide row (AND+AC)")
        # Q (K^T V): each Q spike adds a d-wide row of the integer matrix K^T V; dense N*d*d per head.
        row = self._row(f"{name}.qkv", "ssa:q(k^T v)")
        iq = classify_input(q)
        self._charge(row, iq, iq.events * d, q.numel() * d, "each Q spike adds a row of K^T V; scale folded")

    def _maybe_sdsa(self, name: str, stash: dict[str, torch.Tensor]) -> None:
        """``sum_tokens(K * V)`` once K and V are seen; ``Q * kv`` once the kv neuron has fired."""
        if "k" in stash and "v" in stash:
            k, v = stash.pop("k"), stash.pop("v")
            ik, iv = classify_input(k), classify_input(v)
            prod = classify_input(k * v)
            row = self._row(f"{name}.kv", "sdsa:sum(k*v)")
            self._add_input(row, prod)
            row.dense_macs += k.numel()
            if ik.kind == "binary" or iv.kind == "binary":
                row.mask_ops += k.numel()
                row.sops += prod.nonzero
                self._reasons[row.name]["K AND V mask (not charged) + 1 AC per nonzero product in the token sum"] = None
            else:
                row.macs += k.numel()
                self._reasons[row.name]["neither K nor V binary: multiply-accumulate per element"] = None
        if "kv" in stash and "q" in stash:
            kv, q = stash.pop("kv"), stash.pop("q")
            iq, ikv = classify_input(q), classify_input(kv)
            row = self._row(f"{name}.q_kv", "sdsa:q*kv")
            self._add_input(row, iq)
            row.dense_macs += q.numel()
            if iq.kind == "binary" or ikv.kind == "binary":
                row.mask_ops += q.numel()
                self._reasons[row.name]["Q AND kv mask (not charged)"] = None
            else:
                row.macs += q.numel()
                self._reasons[row.name]["neither Q nor kv binary: one multiply per element"] = None

    # -- result ---------------------------------------------------------------------------------------------------
    def layers(self, timesteps: int, batch_size: int) -> list[LayerStats]:
        """The rows in execution order, with ``flops``, ``input_kind`` and ``reason`` filled in."""
        steps = timesteps * batch_size
        out = []
        for name, row in self.rows.items():
            kinds = self._kinds[name]
            row.input_kind = "" if row.is_neuron else (next(iter(kinds)) if len(kinds) == 1 else "mixed")
            row.flops = row.dense_macs // steps if row.dense_macs % steps == 0 else row.dense_macs / steps
            row.reason = "; ".join(self._reasons[name])
            out.append(row)
        return out

    def report(
        self, timesteps: int, batch_size: int, model_name: str | None = None, output: Any = None
    ) -> EnergyReport:
        """An ``EnergyReport`` of what was counted so far."""
        if timesteps < 1 or batch_size < 1:
            raise ValueError(f"timesteps and batch_size must be >= 1, got {timesteps} and {batch_size}")
        name = model_name or getattr(self.model, "model_name", None) or type(self.model).__name__
        return EnergyReport(
            model_name=str(name),
            timesteps=int(timesteps),
            batch_size=int(batch_size),
            layers=self.layers(timesteps, batch_size),
            integer_inputs=self.integer_inputs,
            output=output,
        )


def _sequence_shape(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    if hasattr(model, "to_sequence"):
        seq = model.to_sequence(x)  # validates, [B, C, H, W] -> [T, B, C, H, W] (a view)
        return int(seq.shape[0]), int(seq.shape[1])
    if x.ndim < 2:
        raise ValueError(f"expected a time-first input [T, B, ...] without to_sequence; got {list(x.shape)}")
    return int(x.shape[0]), int(x.shape[1])


def profile(
    model: nn.Module,
    x: torch.Tensor,
    *,
    integer_inputs: str = "accumulate",
    timesteps: int | None = None,
    batch_size: int | None = None,
) -> EnergyReport:
    """Run ``model`` once on ``x`` with counting hooks and report operations, spikes and energy.

    The model runs in eval mode under ``torch.no_grad`` (its training flag is restored afterwards); the hooks only
    read tensors, so ``report.output`` is bit-identical to ``model(x)`` in eval mode.

    Args:
        model: a spikeformer model (``[B, C, H, W]`` or ``[T, B, C, H, W]`` in) or any module fed a time-first
            ``[T, B, ...]`` input.
        x: the input batch.
        integer_inputs: ``"accumulate"`` (default: an integer input value n costs n ACs per synapse, e.g. the
            spike + spike token sums of Spikformer) or ``"mac"`` (integer non-binary inputs cost dense MACs).
        timesteps, batch_size: override T and B (default: from ``model.to_sequence(x)``, else ``x.shape[:2]``).

    Returns:
        The report; counts per layer are totals over the batch, totals and energies are per inference.
    """
    t, b = _sequence_shape(model, x)
    t, b = timesteps or t, batch_size or b
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), OpCounter(model, integer_inputs) as counter:
            out = model(x)
    finally:
        model.train(was_training)
    return counter.report(t, b, output=out)
