"""Typed training configuration (saved with every run and checkpoint)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Everything a training run depends on.

    Args:
        model: registered model name; ``model_args`` override its entry (``img_size``, ``in_chans`` and
            ``num_classes`` are taken from the data set unless given).
        dataset: ``fashion-mnist``, ``digits`` or ``folder:<path>``; ``data_root`` overrides where it is read from.
        epochs, batch_size: per process (DDP multiplies the global batch by the world size).
        lr, min_lr, warmup_epochs: AdamW peak learning rate, cosine floor, linear warm-up length (epochs, may be
            fractional).
        weight_decay: AdamW decoupled weight decay (not applied to biases, BatchNorm or neuron time constants).
        label_smoothing: cross-entropy label smoothing.
        amp: mixed precision: bf16 autocast (CPU with AMX, or CUDA); weights and optimizer stay float32.
        grad_clip: max global gradient norm (0 disables).
        cuda_graphs: on one CUDA device, capture the whole step once and replay it (``spikeformer.train.graphed``):
            the host no longer limits the step rate. Off on CPUs and with DDP.
        augment: random crop (padding ``crop_padding``) and horizontal flip.
        seed: seeds model init, shuffling and augmentation; runs with the same seed are identical.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:n]``.
        output: run folder (``metrics.jsonl``, ``curves.png``, ``last/`` for resuming, ``checkpoint/``).
        resume: continue from ``output/last`` when it exists.
        stop_after: end this invocation after that many epochs (the schedule still spans ``epochs``); resume later.
        limit_train, limit_test: use only the first N images (quick runs, tests).
        init_from: checkpoint folder whose weights initialise the model: the same architecture, or the ANN of a
            convertible model when its spiking twin is trained (``--arg spiking=true``): the ANN is converted at the
            run's timesteps first (hybrid training; ``docs/conversion.md``).
        distill_from: teacher checkpoint for knowledge distillation; ``distill_alpha`` weights the KL term and
            ``distill_temperature`` softens both distributions (Hinton et al., 2015).
    """

    model: str = "spikformer-4-384"
    model_args: dict[str, Any] = field(default_factory=dict)
    dataset: str = "fashion-mnist"
    data_root: str | None = None
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    amp: bool = False
    grad_clip: float = 1.0
    cuda_graphs: bool = True
    augment: bool = True
    crop_padding: int = 2
    seed: int = 0
    device: str = "auto"
    output: str = "runs/latest"
    resume: bool = True
    stop_after: int | None = None
    eval_batch_size: int = 500
    limit_train: int | None = None
    limit_test: int | None = None
    init_from: str | None = None
    distill_from: str | None = None
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0 or self.min_lr < 0 or self.min_lr > self.lr:
            problems.append(f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.warmup_epochs < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            problems.append("warmup_epochs, grad_clip and weight_decay must be >= 0")
        if not 0 <= self.distill_alpha <= 1 or self.distill_temperature <= 0:
            problems.append("distill_alpha must be in [0, 1] and distill_temperature > 0")
        if problems:
            raise ValueError("invalid training configuration: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
