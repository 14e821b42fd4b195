"""``linear(x, weight, bias)``: ``F.linear`` through oneDNN on the CPU in float32.

PyTorch sends a float32 CPU ``F.linear`` to MKL's sgemm. On AMD EPYC CPUs MKL is more than twice slower than oneDNN
(which PyTorch also ships, and which SpikingJelly's Spikformer reaches through its 1x1 ``Conv1d`` layers; figures:
``docs/runtime.md``), reached here through ``torch.ops.mkldnn._linear_pointwise``. ``linear`` takes the oneDNN
route for float32 CPU tensors outside autocast (forward, and a hand-written backward whose three products go the
same way), and ``F.linear`` everywhere else. Results equal ``F.linear``'s up to float32 summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["linear", "Linear", "onednn_available"]


def _probe() -> bool:
    try:
        x, w = torch.ones(2, 3), torch.ones(4, 3)
        return torch.equal(torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], ""), F.linear(x, w))
    except Exception:  # noqa: BLE001 - any build without the op: plain F.linear
        return False


_ONEDNN = torch.backends.mkldnn.is_available() and _probe()


def onednn_available() -> bool:
    return _ONEDNN


def _lp(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _lp(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1]).contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _lp(g2, weight.t().contiguous(), None).reshape(x.shape)
        if ctx.needs_input_grad[1]:
            gw = _lp(g2.t().contiguous(), x.reshape(-1, x.shape[-1]).t().contiguous(), None)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g2.sum(0)
        return gx, gw, gb


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN for float32 CPU tensors outside autocast."""
    if (
        _ONEDNN
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and (bias is None or bias.dtype == torch.float32)
        and x.numel() > 0
        and not torch.is_autocast_enabled("cpu")
    ):
        if torch.is_grad_enabled() and (
            x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
        ):
            return _OneDNNLinear.apply(x, weight, bias)
        return _lp(x, weight, bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state dict) whose forward is :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
