"""Fixtures for the energy tests: small registered models whose spikes reach every layer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import spikeformer
from spikeformer.models import model_defaults

SMALL = dict(img_size=32, embed_dim=32, depth=1, num_heads=4, timesteps=2)


def _small_model(name: str, excite: bool = True) -> torch.nn.Module:
    """``name`` at 32x32, D=32, one block, 4 heads, T=2 (its own pooling); BatchNorm scaled so spikes propagate."""
    torch.manual_seed(0)
    model = spikeformer.create_model(name, **SMALL, pool_stages=model_defaults(name)["pool_stages"]).eval()
    if excite:
        g = torch.Generator().manual_seed(0)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                with torch.no_grad():
                    m.weight.fill_(8.0)
                    m.bias.copy_(2.0 * torch.randn(m.bias.shape, generator=g))
    return model


def _images(model: torch.nn.Module, n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *model.input_shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def small_model() -> Callable[..., torch.nn.Module]:
    return _small_model


@pytest.fixture
def images() -> Callable[..., torch.Tensor]:
    return _images


@pytest.fixture
def small() -> dict:
    return dict(SMALL)
