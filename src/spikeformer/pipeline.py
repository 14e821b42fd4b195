"""``load_pipeline(path)``: a verified checkpoint plus its preprocessing, ready for raw images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spikeformer.checkpoint import Manifest, load_checkpoint
from spikeformer.data.transforms import Preprocess
from spikeformer.runtime import Runner

__all__ = ["Pipeline", "load_pipeline"]


@dataclass
class Pipeline:
    """A model with the preprocessing it was trained with.

    Attributes:
        model: the torch module as trained (eval mode): its modules are those the checkpoint built, whatever the
            runner does, so every exporter, profiler and compiler takes it (``spikeformer.hardware.to_nir``,
            ``spikeformer.hardware.compile_model``, ``spikeformer.energy.profile``).
        runner: runs ``model`` for inference on its own optimized copy (``spikeformer.runtime.Runner``).
        manifest: the checkpoint's manifest.
        preprocess: raw uint8 pixels -> normalised float ``[N, C, H, W]``.
    """

    model: nn.Module
    runner: Runner
    manifest: Manifest
    preprocess: Preprocess

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` after preprocessing."""
        return (self.preprocess.channels, *self.preprocess.image_size)

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest.class_names)

    @property
    def device(self) -> torch.device:
        """Where the model and its runner are (the checkpoint is loaded there)."""
        return next(self.model.parameters()).device

    def predict_logits(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw uint8 images ``[N, H, W]`` (single channel) or ``[N, C, H, W]`` -> logits ``[N, classes]`` (float32)."""
        x = self.preprocess(images)
        if len(x) == 0:
            return torch.empty(0, len(self.manifest.class_names))
        return self.runner.run(x)

    def predict(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw images -> class indices ``[N]``."""
        return self.predict_logits(images).argmax(1)


def load_pipeline(path: str | Path, device: str | torch.device = "cpu", precision: str = "fp32") -> Pipeline:
    """Verify (sha256) and load a checkpoint folder; raises ``CheckpointError`` with a clear message otherwise.

    ``device`` and ``precision`` configure the ``Runner`` (see ``spikeformer.runtime``); ``Pipeline.model`` stays the
    module the checkpoint built.
    """
    model, manifest = load_checkpoint(path, map_location=device)
    return Pipeline(
        model=model, runner=Runner(model, device, precision), manifest=manifest, preprocess=manifest.preprocess
    )
