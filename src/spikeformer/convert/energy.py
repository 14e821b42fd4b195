"""Energy of converted networks: ``spikeformer.energy.profile`` plus the activation products it cannot see.

The profiler counts convs, linears and neurons by hooks; the attention products of a ``ReLUViT`` are tensor
products inside ``ReLUAttention.forward``. ``profile_converted`` adds one row per product, counted from the operands
(the outputs of the ``act_q``, ``act_k``, ``act_s`` and ``act_v`` activations):

- spiking twin (Expectation Compensation, Huang et al. 2024): ``C_t = S^A_t S^B_t`` is kept as an integer matrix and
  updated by ``C_t = C_{t-1} + A_t S^B_t + S^A_{t-1} B_t``: each spike of ``A_t`` adds a row of ``S^B_t`` (M ACs),
  each spike of ``B_t`` a column of ``S^A_{t-1}`` (N ACs); the output ``C_t / t - C_{t-1} / (t - 1)`` costs one
  multiply-accumulate per output element and step (charged as MACs: the compensation is not spike-driven);
- accumulation-coded twin (``neuron="st-bif"``, signed spikes): ``out_t = A_t S^B_t + S^A_{t-1} B_t`` is the same
  spike-driven accumulation (a -1 spike subtracts the row or column) and is itself the output: no MACs (the constant
  scale folds into the threshold of the neuron that reads it);
- ANN (one step, real-valued operands): dense ``N K M`` MACs per head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikeformer.energy import EnergyReport, LayerStats, OpCounter
from spikeformer.models.vit_relu import ReLUAttention

__all__ = ["profile_converted"]


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    t, b, n, d = x.shape
    return x.reshape(t, b, n, heads, d // heads).transpose(2, 3)  # [T, B, N, D] -> [T, B, H, N, d]


def _spikes(x: torch.Tensor, signed: bool) -> bool:
    ok = (x == 0) | (x == 1)
    return bool((ok | (x == -1)).all() if signed else ok.all())


def _product_row(name: str, kind: str, a: torch.Tensor, b: torch.Tensor, cumulative: bool = False) -> LayerStats:
    """Cost of ``A @ B`` over time for ``a [T, B, H, N, K]``, ``b [T, B, H, K, M]`` (``cumulative``: the
    accumulation-coded product of signed spikes)."""
    t, bsz, h, n, k = a.shape
    m = b.shape[-1]
    dense = t * bsz * h * n * k * m
    binary = _spikes(a, cumulative) and _spikes(b, cumulative)
    row = LayerStats(name=name, kind=kind, calls=1, input_elements=a.numel(), dense_macs=dense)
    row.max_input = float(a.abs().max()) if a.numel() else 0.0
    if binary and t > 1:
        events_a = int(torch.count_nonzero(a))
        events_b = int(torch.count_nonzero(b))
        row.input_kind, row.events, row.nonzero = ("count" if cumulative else "binary"), events_a, events_a
        row.sops = events_a * m + events_b * n
        row.macs = 0 if cumulative else t * bsz * h * n * m
        row.reason = (
            "signed spikes: A spikes add/subtract rows of S^B (M ACs), B spikes columns of S^A (N ACs)"
            if cumulative
            else "ECM: A spikes add rows of S^B (M ACs), B spikes add columns of S^A (N ACs); C_t/t update MACs"
        )
    else:
        row.input_kind, row.macs = "real", dense
        row.reason = "real-valued operands: dense N*K*M MACs per head and step"
    row.flops = dense / (t * bsz)
    return row


def profile_converted(model: nn.Module, x: torch.Tensor, **kwargs: Any) -> EnergyReport:
    """``spikeformer.energy.profile`` of ``model`` on ``x``, with rows for the ``ReLUViT`` attention products.

    Keyword arguments go to ``OpCounter`` (``integer_inputs``). Runs in eval mode under ``torch.no_grad``.
    """
    stash: dict[str, dict[str, torch.Tensor]] = {}
    rows: list[LayerStats] = []
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, ReLUAttention):
            for role in ("q", "k", "s", "v"):

                def hook(_m: nn.Module, _i: tuple, out: torch.Tensor, name: str = name, role: str = role) -> None:
                    stash.setdefault(name, {})[role] = out.detach()

                handles.append(getattr(m, f"act_{role}").register_forward_hook(hook))
    seq = model.to_sequence(x) if hasattr(model, "to_sequence") else x
    t, b = int(seq.shape[0]), int(seq.shape[1])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), OpCounter(model, **kwargs) as counter:
            out = model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    for name, ops in stash.items():
        heads = next(m for n, m in model.named_modules() if n == name).num_heads
        q, k, v = (_split(ops[r], heads) for r in ("q", "k", "v"))
        cum = bool(getattr(next(m for n, m in model.named_modules() if n == name), "cumulative", False))
        kinds = ("sum:q k^T", "sum:s v") if cum else ("ecm:q k^T", "ecm:s v")
        rows.append(_product_row(f"{name}.qk", kinds[0], q, k.transpose(-2, -1), cum))
        rows.append(_product_row(f"{name}.sv", kinds[1], ops["s"], v, cum))
    report = counter.report(t, b, output=out)
    report.layers.extend(rows)
    return report
