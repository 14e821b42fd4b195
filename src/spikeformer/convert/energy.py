"""Energy of converted networks: ``spikeformer.energy.profile`` plus the activation products it cannot see.

The profiler counts convs, linears and neurons by hooks; the attention products of a ``ReLUViT`` are tensor
products inside ``ReLUAttention.forward``. ``profile_converted`` adds one row per product, counted from the operands
(the outputs of the ``act_q``, ``act_k``, ``act_s`` and ``act_v`` activations):

- spiking twin (Expectation Compensation, Huang et al. 2024): ``C_t = S^A_t S^B_t`` is kept as an integer matrix and
  updated by ``C_t = C_{t-1} + A_t S^B_t + S^A_{t-1} B_t``: each spike of ``A_t`` adds a row of ``S^B_t`` (M ACs),
  each spike of ``B_t`` a column of ``S^A_{t-1}`` (N ACs); the output ``C_t / t - C_{t-1} / (t - 1)`` costs one
  multiply-accumulate per output element and step (charged as MACs: the compensation is not spike-driven);
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


def _product_row(name: str, kind: str, a: torch.Tensor, b: torch.Tensor) -> LayerStats:
    """Cost of ``A @ B`` over time for ``a [T, B, H, N, K]``, ``b [T, B, H, K, M]``."""
    t, bsz, h, n, k = a.shape
    m = b.shape[-1]
    dense = t * bsz * h * n * k * m
    binary = bool(((a == 0) | (a == 1)).all()) and bool(((b == 0) | (b == 1)).all())
    row = LayerStats(name=name, kind=kind, calls=1, input_elements=a.numel(), dense_macs=dense)
    row.max_input = float(a.abs().max()) if a.numel() else 0.0
    if binary and t > 1:
        events_a = int(torch.count_nonzero(a))
        events_b = int(torch.count_nonzero(b))
        row.input_kind, row.events, row.nonzero = "binary", events_a, events_a
        row.sops = events_a * m + events_b * n
        row.macs = t * bsz * h * n * m
        row.reason = "ECM: A spikes add rows of S^B (M ACs), B spikes add columns of S^A (N ACs); C_t/t update MACs"
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
        rows.append(_product_row(f"{name}.qk", "ecm:q k^T", q, k.transpose(-2, -1)))
        rows.append(_product_row(f"{name}.sv", "ecm:s v", ops["s"], v))
    report = counter.report(t, b, output=out)
    report.layers.extend(rows)
    return report
