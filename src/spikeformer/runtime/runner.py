"""``Runner``: the one inference path (CLI, profiler timings, service and worker all call it).

It owns a model in eval mode on one device and runs batches of preprocessed inputs ``[B, C, H, W]`` (or encoded
``[T, B, C, H, W]``) under ``torch.inference_mode``, optionally in bfloat16 autocast, in chunks of at most
``max_batch_size``. ``run_with_stats`` also counts the spikes each sample emitted (all neurons, all time steps).
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from spikeformer.kernels import cpu as kernels
from spikeformer.nn.fold import fold_batchnorm, move_conv_bias_into_neurons
from spikeformer.nn.neuron import BaseNeuron, set_backend
from spikeformer.runtime.cuda_graphs import GraphedForward
from spikeformer.runtime.event import to_event_driven
from spikeformer.runtime.int8 import (
    fuse_dequantize_into_neurons,
    fuse_pooling_into_int8_convs,
    fuse_spiking_attention,
    int8_spiking_neurons,
    shared_conversions,
    to_int8,
)
from spikeformer.runtime.pool import to_fast_pooling

__all__ = ["AUTO_MIN_AGREEMENT", "PRECISIONS", "RunStats", "Runner", "select_precision"]

PRECISIONS = ("fp32", "bf16", "int8", "auto")


@dataclass
class RunStats:
    """Per-sample spike counts ``[B]`` (int64) of one ``run_with_stats`` call."""

    spikes: torch.Tensor


AUTO_MIN_AGREEMENT = 0.995  # the auto rule: a faster precision must agree with float32 on at least 99.5 % of inputs
AUTO_SAMPLES = 256  # without calibration images, ``auto`` measures the rule on the first this many inputs it runs
# what a runner takes from the runner it rebuilt when ``auto`` switched precision
_REBUILT = ("precision", "model", "event_driven", "channels_last", "_neurons", "_fused", "_call", "compiled")


def select_precision(
    model: nn.Module,
    images: torch.Tensor,
    device: str | torch.device = "cpu",
    min_agreement: float = AUTO_MIN_AGREEMENT,
) -> tuple[str, dict]:
    """The fastest precision whose predictions on ``images`` agree with the plain float32 model's on at least
    ``min_agreement`` of them; returns ``(precision, {precision: {"agreement", "seconds"}})``.

    Candidates: int8 and bf16 on the CPU, bf16 on CUDA, and the optimized float32 path (chosen when nothing faster
    qualifies). Timings are of one pass over ``images`` after a warm-up batch.
    """
    device = torch.device(device)
    ref = Runner(model, device, "fp32", optimize=False).run(images).argmax(1)
    candidates = ["int8", "bf16", "fp32"] if device.type == "cpu" else ["bf16", "fp32"]
    report: dict = {}
    for p in candidates:
        runner = Runner(model, device, p)
        runner.run(images[:8])  # warm-up (the event-driven layers calibrate on their first calls)
        t = time.perf_counter()
        pred = runner.run(images).argmax(1)
        report[p] = {"agreement": float((pred == ref).float().mean()), "seconds": time.perf_counter() - t}
    ok = [p for p in candidates if report[p]["agreement"] >= min_agreement or p == "fp32"]
    return min(ok, key=lambda p: report[p]["seconds"]), report


def _on_device(t: torch.Tensor, device: torch.device) -> bool:
    """Whether ``t.to(device)`` would return ``t`` itself."""
    if t.device.type != device.type:
        return False
    if device.index is None:
        return device.type != "cuda" or t.device.index == torch.cuda.current_device()
    return t.device.index == device.index


def _private_copy(model: nn.Module, device: torch.device, share: bool) -> nn.Module:
    """The runner's own copy of ``model``, in eval mode; ``model`` itself is left exactly as it was.

    Args:
        model: the caller's module.
        device: where the runner will run.
        share: keep the caller's parameter and buffer tensors (only the module objects are new), so the runner sees
            in-place weight updates (an optimizer step, ``load_state_dict``) as running the caller's module did.
            Honoured only when every tensor is on ``device`` already (moving a shared tensor would move the caller's);
            the caller passes ``False`` when anything rewrites the tensors. Otherwise: a deep copy, a snapshot of the
            weights at construction.
    """
    tensors = [*model.parameters(), *model.buffers()]
    memo = {id(t): t for t in tensors} if share and all(_on_device(t, device) for t in tensors) else {}
    return copy.deepcopy(model, memo).eval()


class Runner:
    """Run a model for inference.

    The caller's model is never modified (its modules, their types, training flags and devices stay as they were):
    the runner runs its own copy, ``Runner.model``. When nothing rewrites the weights (``optimize=False`` in float32 or
    bf16, no event-driven layers, no channels-last) and they are on ``device`` already, that copy shares the caller's
    parameter and buffer tensors, so in-place weight updates reach the runner; otherwise it is a deep copy taken at
    construction (build a new runner after changing the weights).

    Args:
        model: a spiking model taking ``[B, C, H, W]`` and returning logits ``[B, classes]``.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (default), ``fp32``, ``bf16`` (autocast; spikes are exact in bf16, membrane sums are
            not) or ``int8`` (CPU: spike-fed layers as int8 x per-channel int8 weights, ``spikeformer.runtime.int8``).
            ``auto``: with ``calibration`` images, the fastest precision whose predictions agree with float32 on at
            least ``AUTO_MIN_AGREEMENT`` of them (``select_precision``); without, the same measurement on the first
            ``AUTO_SAMPLES`` inputs the runner is given, running float32 until then (on the bundled model int8 and
            bf16 agree on only about 97.5 %, so it stays float32: docs/benchmarks.md).
        calibration: preprocessed images for ``precision="auto"`` (use a few hundred: the rule is a fraction).
        max_batch_size: larger inputs are split into chunks of this size.
        optimize: fold BatchNorm into the weights, run every neuron with the fused multi-step kernel (compiled on
            the CPU) and, on the CPU, max-pool with the compiled kernel (float32 results equal the reference up to
            rounding).
        event_driven: on the CPU in float32, run spike-fed linear and 3x3 conv layers with the event-driven kernels
            of ``spikeformer.runtime.event`` below each layer's measured crossover density. ``None`` (default): when
            ``optimize`` is on and the compiled kernels are available.
        channels_last: keep conv weights and activations in channels-last memory (what cuDNN's tensor-core kernels
            read; the neuron kernels accept it as is). ``None`` (default): on CUDA when ``optimize`` is on.
        cuda_graphs: replay one captured CUDA graph per batch size (``spikeformer.runtime.cuda_graphs``) instead of
            launching a few hundred kernels per call; batches are padded to the next power of two (at most
            ``max_batch_size``) so that few shapes are captured. ``None`` (default): on CUDA when ``optimize`` is on.
        compile: run the model through ``torch.compile`` (neurons as the plain per-step loop, which Inductor fuses
            with their neighbours); off by default: ``bench/speed_gpu.py`` measures whether it pays.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        precision: str = "auto",
        max_batch_size: int = 256,
        optimize: bool = True,
        event_driven: bool | None = None,
        int8_terms: int = 1,
        calibration: torch.Tensor | None = None,
        channels_last: bool | None = None,
        cuda_graphs: bool | None = None,
        compile: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; accepted: {PRECISIONS}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available; use device='cpu'")
        if precision == "int8" and self.device.type != "cpu":
            raise ValueError("precision 'int8' is the CPU path; on CUDA use 'bf16' or 'auto'")
        original = model  # the caller's module: read, never modified
        self.precision_report: dict | None = None
        self._auto_inputs: list[torch.Tensor] | None = None  # collected for ``auto`` without calibration images
        if precision == "auto" and calibration is not None:
            precision, self.precision_report = select_precision(original, calibration, self.device)
        elif precision == "auto":  # measure the rule on the first real inputs; float32 until then
            precision, self._auto_inputs = "fp32", []
            self._original = original
            self._rebuild_args = dict(
                max_batch_size=max_batch_size, optimize=optimize, event_driven=event_driven, int8_terms=int8_terms,
                channels_last=channels_last, cuda_graphs=cuda_graphs, compile=compile,
            )  # fmt: skip
            self._auto_lock = threading.Lock()
        self.precision = precision
        if event_driven is None:
            event_driven = optimize and self.device.type == "cpu" and precision == "fp32" and kernels.available()
        on_cuda = self.device.type == "cuda"
        self.channels_last = bool(optimize and on_cuda if channels_last is None else channels_last)
        # the runner's own module: folding, int8 and event-driven layers and channels-last rewrite a deep copy
        rewritten = optimize or precision == "int8" or bool(event_driven) or self.channels_last
        model = _private_copy(original, self.device, share=not rewritten)
        if optimize:
            model = fold_batchnorm(model, inplace=True)
            set_backend(model, "fused")
            to_fast_pooling(model)
        if precision == "int8":
            model = to_int8(model, terms=int8_terms)
            int8_spiking_neurons(model)  # spikes that only int8 products read are written as int8
            fuse_pooling_into_int8_convs(model)  # convolutions max-pool their int32 accumulators before scaling them
            fuse_dequantize_into_neurons(model)  # and neurons read their products' int32 accumulators directly
            fuse_spiking_attention(model)  # Spikformer's attention: one Q/K/V product, one kernel after it
        if event_driven:
            model = to_event_driven(model)
        self.event_driven = bool(event_driven)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.to(self.device)
        if optimize and on_cuda:
            move_conv_bias_into_neurons(self.model)  # the neuron kernel adds it while reading the conv output
        self.optimized = optimize
        self.max_batch_size = max_batch_size
        self._set_counted_modules()
        self._call: nn.Module | Callable = self.model
        if compile:
            set_backend(self.model, "torch")
            self._call = torch.compile(self.model, dynamic=False)
        self.compiled = compile
        use_graphs = optimize and on_cuda if cuda_graphs is None else cuda_graphs
        if use_graphs and not on_cuda:
            raise ValueError("cuda_graphs=True needs device='cuda'")
        self._graphed = GraphedForward(self._device_forward, max_graphs=12) if use_graphs else None

    def _set_counted_modules(self) -> None:
        """The neurons ``run_with_stats`` hooks, and the fused blocks that count their own neurons' spikes (their
        ``fused_neurons()`` do not run as modules: ``spikeformer.runtime.int8.Int8SpikingSelfAttention``)."""
        self._fused = [m for m in self.model.modules() if hasattr(m, "fused_neurons")]
        inside = {id(n) for m in self._fused for n in m.fused_neurons()}
        self._neurons = [m for m in self.model.modules() if isinstance(m, BaseNeuron) and id(m) not in inside]

    @property
    def backend(self) -> str:
        """A short name for metrics and responses, e.g. ``cpu-fp32``."""
        return f"{self.device.type}-{self.precision}"

    @property
    def cuda_graphs(self) -> bool:
        return self._graphed is not None

    def _device_forward(self, x: torch.Tensor) -> torch.Tensor:
        # no autocast weight cache: graph capture forbids it, and eager inference gains nothing from it
        with (
            torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16", cache_enabled=False),
            shared_conversions() if self.precision == "int8" else contextlib.nullcontext(),
        ):
            return self._call(x).float()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self._graphed is None:
            return self._device_forward(x)
        dim = x.ndim - 4
        b = x.shape[dim]
        bucket = min(1 << (b - 1).bit_length(), self.max_batch_size) if b else 0
        if bucket > b:  # pad to a captured size; samples are independent in inference, padding rows are dropped
            pad = x.new_zeros(*x.shape[:dim], bucket - b, *x.shape[dim + 1 :])
            x = torch.cat([x, pad], dim=dim)
        return self._graphed(x)[:b]

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes]`` (float32, on the CPU)."""
        with torch.inference_mode():
            out = torch.cat([self._forward(c).cpu() for c in x.split(self.max_batch_size, dim=x.ndim - 4)])
        self._observe(x)
        return out

    def _observe(self, x: torch.Tensor) -> None:
        """``precision="auto"`` without calibration images: keep the first ``AUTO_SAMPLES`` inputs, then apply the
        agreement rule to them (``select_precision``) and switch to the chosen precision."""
        if self._auto_inputs is None:
            return
        with self._auto_lock:
            if self._auto_inputs is None:
                return
            if not self._auto_inputs or x.ndim == self._auto_inputs[0].ndim:
                self._auto_inputs.append(x.detach().cpu())
            batch_dim = self._auto_inputs[0].ndim - 4
            if sum(t.shape[batch_dim] for t in self._auto_inputs) < AUTO_SAMPLES:
                return
            images = torch.cat(self._auto_inputs, dim=batch_dim)
            self._auto_inputs = None
            chosen, report = select_precision(self._original, images, self.device, AUTO_MIN_AGREEMENT)
            if chosen != self.precision:
                new = Runner(self._original, self.device, chosen, **self._rebuild_args)
                for name in _REBUILT:
                    setattr(self, name, getattr(new, name))
                self._graphed = None if new._graphed is None else GraphedForward(self._device_forward, max_graphs=12)
            self.precision_report = report

    def run_with_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, RunStats]:
        """Logits and per-sample spike counts, from forward hooks on every neuron (outputs unchanged)."""
        batch_dim = x.ndim - 4  # 0 for [B, C, H, W], 1 for [T, B, C, H, W]
        logits, spikes = [], []
        for chunk in x.split(self.max_batch_size, dim=batch_dim):
            counts = torch.zeros(chunk.shape[batch_dim], dtype=torch.float64, device=self.device)

            def hook(_m: nn.Module, _i: tuple, out: torch.Tensor, counts: torch.Tensor = counts) -> None:
                # neuron outputs are [T, B, ...] in multi-step mode: sum everything but the batch axis. A float32 sum
                # of 0/1 spikes is exact below 2**24 per sample and much cheaper than a float64 one.
                flat = out.detach().flatten(2)
                exact32 = flat.shape[0] * flat.shape[2] < 2**24
                counts.add_(flat.sum(dim=(0, 2), dtype=torch.float32 if exact32 else torch.float64))

            def fused_hook(m: nn.Module, _i: tuple, _out: torch.Tensor, counts: torch.Tensor = counts) -> None:
                counts.add_(m.spike_counts.to(counts.device))

            handles = [n.register_forward_hook(hook) for n in self._neurons]
            handles += [m.register_forward_hook(fused_hook) for m in self._fused]
            for m in self._fused:
                m.count_spikes = True
            try:
                with torch.inference_mode():
                    # eager: the hooks must run on every call, a replayed graph would skip them
                    logits.append(self._device_forward(chunk.to(self.device)).cpu())
            finally:
                for h in handles:
                    h.remove()
                for m in self._fused:
                    m.count_spikes = False
            spikes.append(counts.round().long().cpu())
        self._observe(x)
        return torch.cat(logits), RunStats(spikes=torch.cat(spikes))
