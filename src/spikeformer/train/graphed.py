"""``GraphedStep``: a whole training step (forward, loss, backward, clipping, optimizer) replayed as one CUDA graph.

A Spikformer training step launches about a thousand kernels; at batch 128 on a current GPU the host cannot launch them
as fast as the device runs them (the host time per step exceeds the kernel time; docs/benchmarks.md). Capturing the
step once and replaying it removes the launch cost.

``step_fn(x, y) -> tuple of tensors`` must do everything a step does, starting with
``optimizer.zero_grad(set_to_none=True)``, and nothing that waits for the host (no ``.item()``, no data-dependent
Python branches). The optimizer must be built with ``capturable=True``, and a learning-rate schedule must change the
values of tensor learning rates in place (``set_lr``): a float learning rate would be frozen into the graph.

The first ``warmup`` calls run eagerly on a side stream (cuBLAS, cuDNN and Triton pick and compile their kernels; the
optimizer creates its state); the next call captures the step and replays it, and later calls copy their batch into
the captured input buffers and replay. Every call is a real training step, and batches must keep one shape (drop the
last partial batch). The returned tensors are the captured outputs: read them before the next call. A step that
cannot be captured (a model that reads a value back to the host mid-step, for example) runs eagerly from then on,
with a warning and the reason in ``failed``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

__all__ = ["GraphedStep", "set_lr", "tensor_lr"]


def tensor_lr(optimizer: torch.optim.Optimizer) -> None:
    """Turn every parameter group's learning rate into a device tensor (what a captured optimizer step reads)."""
    for group in optimizer.param_groups:
        device = group["params"][0].device
        group["lr"] = torch.tensor(float(group["lr"]), device=device)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every group: in place for tensor learning rates, else by assignment."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


class GraphedStep:
    def __init__(self, step_fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]], warmup: int = 3):
        self.step_fn = step_fn
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[torch.Tensor, torch.Tensor] | None = None
        self._out: tuple[torch.Tensor, ...] = ()
        self.failed: str | None = None  # why the capture failed, if it did

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not x.is_cuda:
            raise ValueError("GraphedStep needs CUDA tensors; run the step eagerly on other devices")
        self.calls += 1
        if self.graph is not None:
            sx, sy = self._static
            if sx.shape != x.shape or sy.shape != y.shape:
                raise ValueError(
                    f"a captured training step replays one batch shape, {list(sx.shape)}; got {list(x.shape)} "
                    "(drop the last partial batch)"
                )
            sx.copy_(x, non_blocking=True)
            sy.copy_(y, non_blocking=True)
            self.graph.replay()
            return self._out
        if self.calls <= self.warmup:
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):
                out = self.step_fn(x, y)
            torch.cuda.current_stream(x.device).wait_stream(side)
            return out
        if self.failed:
            return self.step_fn(x, y)
        self._static = (x.clone(), y.clone())
        torch.cuda.synchronize(x.device)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._out = self.step_fn(*self._static)
        except RuntimeError as e:  # something in the step waits for the host: train eagerly from here on
            torch.cuda.synchronize(x.device)
            self.failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            warnings.warn(
                f"the training step could not be captured as a CUDA graph ({self.failed}); running it eagerly",
                stacklevel=2,
            )
            self._static, self._out = None, ()
            return self.step_fn(x, y)  # a failed capture ran nothing: this batch's step is still to do
        self.graph = graph
        self.graph.replay()  # capturing records the step without running it
        return self._out
