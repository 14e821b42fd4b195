"""Helpers shared by tests (importable because pytest's pythonpath includes tests/)."""

from __future__ import annotations

import torch

import spikeformer

TINY = dict(img_size=28, in_chans=1, num_classes=10, embed_dim=32, depth=1, num_heads=4, timesteps=2)


def tiny_model(**overrides) -> torch.nn.Module:
    """An untrained 28x28 single-channel Spikformer small enough for CPU tests."""
    torch.manual_seed(0)
    return spikeformer.create_model("spikformer-4-384", **{**TINY, **overrides}).eval()
