"""Fixtures for the conversion tests: tiny convertible ViTs with non-trivial BatchNorm, saved as checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import spikeformer
from spikeformer.checkpoint import save_checkpoint
from spikeformer.data import Preprocess
from spikeformer.nn.quant import QCFS

TINY = dict(img_size=8, in_chans=1, num_classes=10, patch_size=2, embed_dim=16, depth=1, num_heads=2)


def _tiny_vit(seed: int = 0, **overrides) -> torch.nn.Module:
    """A digits-sized ``vit-relu-fmnist`` whose BatchNorms and thresholds are far from identity (eval mode)."""
    torch.manual_seed(seed)
    model = spikeformer.create_model("vit-relu-fmnist", **{**TINY, **overrides})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.5 * torch.rand(n, generator=g))
            elif isinstance(m, QCFS):
                m.threshold.fill_(1.0 + float(torch.rand((), generator=g)))
        model.head.weight.mul_(50)  # logits of order 1, so that differences are visible
    return model.eval()


@pytest.fixture
def tiny_vit() -> Callable[..., torch.nn.Module]:
    return _tiny_vit


@pytest.fixture
def digits_ann_checkpoint(tmp_path) -> Callable[..., Path]:
    """Save a tiny ANN (``block`` as given) as a digits checkpoint folder; returns the folder."""

    def make(block: str = "relu", name: str = "ann") -> Path:
        model = _tiny_vit(block=block, levels=8)
        folder = tmp_path / name
        save_checkpoint(model, folder, Preprocess.for_dataset("digits"), [str(i) for i in range(10)], "digits")
        return folder

    return make
