"""``fit(config)``: train a spiking transformer with surrogate gradients.

AdamW with a linear warm-up and cosine decay, label smoothing, optional bf16 autocast, gradient clipping, seeded
shuffling and augmentation, a progress bar, evaluation after every epoch, ``metrics.jsonl`` and a PNG of the learning
curves, resumable from ``output/last``. Under ``torchrun`` it trains with DistributedDataParallel (gloo on CPU, NCCL on
CUDA); only rank 0 writes files.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from spikeformer.checkpoint import WEIGHTS_FILE, load_checkpoint, save_checkpoint
from spikeformer.data import (
    ArrayDataset,
    Preprocess,
    iterate_batches,
    load_dataset,
    num_batches,
    random_crop,
    random_horizontal_flip,
)
from spikeformer.kernels import cpu as kernels
from spikeformer.models import create_model
from spikeformer.nn.neuron import set_backend
from spikeformer.runtime.evaluate import evaluate_model
from spikeformer.runtime.pool import to_fast_pooling
from spikeformer.train.config import TrainConfig
from spikeformer.train.graphed import GraphedStep, set_lr, tensor_lr
from spikeformer.train.state import load_json, load_optimizer, save_json, save_optimizer

__all__ = ["FitResult", "fit", "plot_curves", "prepare_model", "standard_preprocess", "resolve_device"]


@dataclass
class FitResult:
    """Where the run wrote its checkpoint, and its final figures."""

    checkpoint: Path
    top1: float
    epochs: int
    seconds: float
    history: list[dict[str, Any]]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ValueError(f"unknown device {name!r}; accepted: auto, cpu, cuda, cuda:N")
    return torch.device(name)


def standard_preprocess(dataset: str, train: ArrayDataset) -> Preprocess:
    """The published normalisation for known data sets, otherwise mean/std measured on the training images."""
    try:
        return Preprocess.for_dataset(dataset)
    except ValueError:
        x = train.images.float() / 255.0
        c = x.shape[1]
        mean = x.transpose(0, 1).reshape(c, -1).mean(1)
        std = x.transpose(0, 1).reshape(c, -1).std(1).clamp(min=1e-3)
        return Preprocess(
            mean=tuple(mean.tolist()), std=tuple(std.tolist()), channels=c, image_size=tuple(train.images.shape[2:])
        )


def _init_from(model: nn.Module, folder: str, what: str) -> None:
    """Load the weights of checkpoint ``folder`` into ``model``.

    Same architecture: the weights as saved. An ANN checkpoint of a convertible model (``spiking=False``) into its
    spiking twin (``spiking=True``): the ANN is converted first (``SpikeformerConverter``, trained QCFS thresholds, the
    twin's ``timesteps``), so hybrid training starts from the converted network (Rathi et al., ICLR 2020).
    """
    src, _ = load_checkpoint(folder)
    state = src.state_dict()
    src_cfg, dst_cfg = getattr(src, "config", None), getattr(model, "config", None)
    if getattr(dst_cfg, "spiking", False) and getattr(src_cfg, "spiking", None) is False:
        from spikeformer.convert import SpikeformerConverter

        state = SpikeformerConverter(timesteps=dst_cfg.timesteps, method="qcfs").convert(src).state_dict()
    own = model.state_dict()
    mismatched = [
        f"{k} {list(v.shape)} vs {list(own[k].shape)}" for k, v in state.items() if k in own and own[k].shape != v.shape
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"--init-from {folder}: weights do not fit {what}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            + (f", shape mismatch {mismatched[:5]}" if mismatched else "")
        )
    model.load_state_dict(state)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".w") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    if warmup and step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def _samples(test: ArrayDataset, per_class: int = 1) -> dict[str, Any]:
    """A few test images (one per class) with labels, carried in the manifest for smoke tests."""
    idx = []
    for c in range(len(test.classes)):
        where = (test.labels == c).nonzero().flatten()[:per_class]
        idx.extend(where.tolist())
    images = test.images[idx].numpy().astype(np.uint8)
    return {
        "shape": list(images.shape),
        "dtype": "uint8",
        "data_b64": base64.b64encode(images.tobytes()).decode(),
        "labels": test.labels[idx].tolist(),
    }


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch (train and test) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h["test_loss"] for h in history], "o-", label="test")
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy")
    a.legend()
    b.plot(ep, [100 * h["train_top1"] for h in history], "o-", label="train (augmented)")
    b.plot(ep, [100 * h["test_top1"] for h in history], "o-", label="test")
    b.set_xlabel("epoch")
    b.set_ylabel("top-1 (%)")
    b.legend()
    b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _augment(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    return random_horizontal_flip(random_crop(x, padding, generator=generator), generator=generator)


def _limit(ds: ArrayDataset, n: int | None) -> ArrayDataset:
    return ds if n is None or n >= len(ds) else ds.subset(range(n))


def _distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    return (
        F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), log_target=True, reduction="batchmean")
        * t
        * t
    )


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` and switch on what makes its training step fast without changing what it computes
    (in place; returns it): every neuron on the fused kernels (compiled on the CPU, Triton on CUDA), max-pooling on
    the compiled or Triton kernels (same outputs and gradients as ``nn.MaxPool2d``), channels-last memory on CUDA."""
    model.to(device)
    set_backend(model, "fused")
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda" or kernels.available():  # without the kernels the CPU fallback's gradient splits ties
        to_fast_pooling(model)
    return model


def fit(cfg: TrainConfig, progress: bool = True) -> FitResult:
    """Train according to ``cfg``; returns the final checkpoint folder and figures."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    main = rank == 0
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output)
    last = out / "last"
    if main:
        out.mkdir(parents=True, exist_ok=True)

    train = _limit(load_dataset(cfg.dataset, "train", cfg.data_root), cfg.limit_train)
    test = _limit(load_dataset(cfg.dataset, "test", cfg.data_root), cfg.limit_test)
    preprocess = standard_preprocess(cfg.dataset, train)
    c, h, w = train.image_shape
    args = {"img_size": (h, w), "in_chans": c, "num_classes": len(train.classes), **cfg.model_args}
    model = create_model(cfg.model, **args)
    if cfg.init_from:
        _init_from(model, cfg.init_from, f"{cfg.model} with {args}")
    teacher = load_checkpoint(cfg.distill_from, map_location=device)[0] if cfg.distill_from else None
    prepare_model(model, device)
    use_graphs = cfg.cuda_graphs and device.type == "cuda" and world == 1
    # on CUDA PyTorch's fused AdamW: one kernel for all parameters instead of a few hundred (it can be captured too)
    fused = device.type == "cuda" or None
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, capturable=use_graphs, fused=fused)
    steps_per_epoch = num_batches(len(train), cfg.batch_size, drop_last=True, world_size=world)
    if steps_per_epoch < 1:
        raise ValueError(f"the training set ({len(train)} images) is smaller than one batch of {cfg.batch_size}")
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    history: list[dict[str, Any]] = []
    start_epoch, step, elapsed = 0, 0, 0.0
    if cfg.resume and (last / "trainer_state.json").is_file():
        st = load_json(last / "trainer_state.json")
        model.load_state_dict(load_checkpoint(last, map_location=device)[0].state_dict())
        load_optimizer(optimizer, last)
        start_epoch, step, elapsed, history = st["epoch"], st["step"], st["seconds"], st["history"]
        if main:
            print(f"resuming {out} at epoch {start_epoch + 1} (step {step})", file=sys.stderr)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if use_graphs:
        tensor_lr(optimizer)  # a captured step reads the learning rate from device memory

    def train_step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # no autocast weight cache under graph capture (it would keep casts from the capture's weights)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp, cache_enabled=not use_graphs):
            logits = net(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        if teacher is not None:
            with torch.no_grad():
                t_logits = teacher(x).float()
            loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * _distill_loss(
                logits, t_logits, cfg.distill_temperature
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        return loss.detach(), logits.detach()

    run_step = GraphedStep(train_step) if use_graphs else train_step

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    log_every = max(1, steps_per_epoch // 10) if progress and main and not sys.stderr.isatty() else 0
    bar = Progress(*columns, console=Console(stderr=True), disable=not (progress and main), transient=False)
    training_meta = {
        "config": cfg.to_dict(),
        "command": " ".join(sys.argv),
        "world_size": world,
        "device": str(device),
        "torch": torch.__version__,
        "machine": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
    }
    with bar:
        end_epoch = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, start_epoch + cfg.stop_after)
        for epoch in range(start_epoch, end_epoch):
            t0 = time.perf_counter()
            model.train()
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)

            augment = functools.partial(_augment, padding=cfg.crop_padding, generator=gen)
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, info="")
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device)
            seen = 0
            batches = iterate_batches(
                train,
                cfg.batch_size,
                shuffle=True,
                generator=gen,
                drop_last=True,
                augment=augment if cfg.augment else None,
                preprocess=preprocess,
                rank=rank,
                world_size=world,
            )
            for x, y in batches:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                set_lr(optimizer, _lr_at(step, total, warmup, cfg))
                loss, logits = run_step(x, y)
                step += 1
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
                seen += len(y)
                bar.update(task, advance=1, info=f"loss {loss.item():.3f}")
                if log_every and seen // len(y) % log_every == 0:  # no live bar in logs: a line every 10 %
                    print(
                        f"epoch {epoch + 1} step {seen // len(y)}/{steps_per_epoch} loss {loss.item():.4f}",
                        file=sys.stderr,
                        flush=True,
                    )
            bar.remove_task(task)
            if world > 1:
                stats = torch.stack([loss_sum, correct, torch.tensor(float(seen), device=device)])
                dist.all_reduce(stats)
                loss_sum, correct, seen = stats[0], stats[1], int(stats[2])
            train_seconds = time.perf_counter() - t0
            record = None
            if main:
                ev = evaluate_model(model, test, preprocess, cfg.eval_batch_size, amp=cfg.amp, device=device)
                elapsed += time.perf_counter() - t0
                record = {
                    "epoch": epoch + 1,
                    "step": step,
                    "lr": float(optimizer.param_groups[0]["lr"]),
                    "train_loss": float(loss_sum) / seen,
                    "train_top1": float(correct) / seen,
                    "test_loss": ev.loss,
                    "test_top1": ev.top1,
                    "epoch_seconds": round(train_seconds, 2),
                    "seconds": round(elapsed, 2),
                }
                history.append(record)
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                plot_curves(history, out / "curves.png")
                save_checkpoint(
                    model, last, preprocess, train.classes, cfg.dataset, {"top1": ev.top1}, training=training_meta
                )
                save_optimizer(optimizer, last)
                save_json(
                    last / "trainer_state.json",
                    {"epoch": epoch + 1, "step": step, "seconds": elapsed, "history": history},
                )
                Console(stderr=True).print(
                    f"epoch {epoch + 1}/{cfg.epochs}: train loss {record['train_loss']:.4f} "
                    f"top-1 {100 * record['train_top1']:.2f}% | test loss {ev.loss:.4f} top-1 {100 * ev.top1:.2f}% "
                    f"| {train_seconds:.0f}s",
                    highlight=False,
                )
            if world > 1:
                dist.barrier()

    final = out / "checkpoint"
    top1 = history[-1]["test_top1"] if history else float("nan")
    if main and end_epoch < cfg.epochs:
        print(f"stopped after epoch {end_epoch} of {cfg.epochs}; run again to resume", file=sys.stderr)
    elif main:
        ev = evaluate_model(model, test, preprocess, cfg.eval_batch_size, amp=False, device=device)
        top1 = ev.top1
        metrics = {
            "top1": ev.top1,
            "test_loss": ev.loss,
            "evaluated_on": f"{cfg.dataset} test ({ev.num_samples})",
            "precision": "float32",
            "per_class": ev.per_class,
        }
        training_meta.update(epochs=cfg.epochs, seconds=round(elapsed, 1), history=history)
        save_checkpoint(
            model,
            final,
            preprocess,
            train.classes,
            cfg.dataset,
            metrics,
            training=training_meta,
            samples=_samples(test),
        )
        assert (final / WEIGHTS_FILE).is_file()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return FitResult(final if end_epoch == cfg.epochs else last, top1, end_epoch, elapsed, history)
