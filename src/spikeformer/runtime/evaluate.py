"""Accuracy, per-class accuracy and the confusion matrix of a model (or a Runner) on a data set: what training,
conversion and the `evaluate` command report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spikeformer.data import ArrayDataset, Preprocess, iterate_batches, load_dataset
from spikeformer.runtime.runner import Runner

__all__ = ["EvalResult", "evaluate_model", "load_evaluation_data", "plot_confusion"]


@dataclass
class EvalResult:
    """Top-1 accuracy (fraction), mean loss, per-class accuracy and confusion counts ``[true, predicted]``."""

    top1: float
    loss: float
    num_samples: int
    per_class: dict[str, float]
    confusion: list[list[int]]
    predictions: list[int] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "top1": self.top1,
            "loss": self.loss,
            "num_samples": self.num_samples,
            "per_class": self.per_class,
            "confusion": self.confusion,
        }


def evaluate_model(
    model: nn.Module | Runner,
    dataset: ArrayDataset,
    preprocess: Preprocess,
    batch_size: int = 500,
    amp: bool = False,
    device: torch.device | str = "cpu",
    progress: Any = None,
) -> EvalResult:
    """Run ``model`` (or a ``Runner``) over ``dataset`` in eval mode; ``progress(n)`` is called per batch.

    A bare module runs in float32 unless ``amp``; a ``Runner`` uses its own device and precision.
    """
    if isinstance(model, Runner):
        predict = model.run
    else:
        model.eval()
        device = torch.device(device)

        def predict(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                return model(x.to(device)).float().cpu()

    k = len(dataset.classes)
    confusion = torch.zeros(k, k, dtype=torch.long)
    loss_sum, preds = 0.0, []
    with torch.inference_mode():
        for x, y in iterate_batches(dataset, batch_size, preprocess=preprocess):
            logits = predict(x)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            p = logits.argmax(1)
            preds.extend(p.tolist())
            confusion += torch.bincount(y * k + p, minlength=k * k).reshape(k, k)
            if progress is not None:
                progress(len(y))
    n = int(confusion.sum())
    correct = confusion.diag()
    per_class = {
        name: float(correct[i] / confusion[i].sum()) if confusion[i].sum() else float("nan")
        for i, name in enumerate(dataset.classes)
    }
    return EvalResult(float(correct.sum()) / max(n, 1), loss_sum / max(n, 1), n, per_class, confusion.tolist(), preds)


def plot_confusion(result: EvalResult, classes: list[str] | tuple[str, ...], path: str | Path, title: str = "") -> Path:
    """Write the confusion matrix (row-normalised colours, raw counts as text) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = torch.tensor(result.confusion, dtype=torch.float)
    norm = cm / cm.sum(1, keepdim=True).clamp(min=1)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * k, 1.0 + 0.6 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                int(cm[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"top-1 {result.top1 * 100:.2f}% on {result.num_samples} images")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def load_evaluation_data(
    dataset: str,
    split: str = "test",
    data_root: str | Path | None = None,
    limit: int | None = None,
    input_shape: tuple[int, ...] | list[int] | None = None,
) -> ArrayDataset:
    """The images a model is evaluated on: a split of a data set, optionally its first ``limit`` images.

    Args:
        dataset: fashion-mnist, digits or folder:PATH.
        split: test, train, or all (every image of a folder data set).
        data_root: Where the data set's files are.
        limit: Keep the first N images only.
        input_shape: The model's input ``(C, H, W)``; the images must have it.

    Raises:
        ValueError: The images do not have ``input_shape``.
        spikeformer.data.DatasetNotFoundError: The data set's files are missing.
    """
    data = load_dataset(dataset, None if split == "all" else split, data_root)
    if limit is not None:
        data = data.subset(range(min(limit, len(data))))
    if input_shape is not None and tuple(data.image_shape) != tuple(input_shape):
        raise ValueError(
            f"the data set's images are {list(data.image_shape)} (C, H, W) but the model takes {list(input_shape)}"
        )
    return data
