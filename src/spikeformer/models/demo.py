"""One batch of random images through a freshly built model, with its spike count: what ``spikeformer demo`` shows."""

from __future__ import annotations

import time
from typing import Any

import torch

from spikeformer.models._registry import create_model
from spikeformer.nn import BaseNeuron

__all__ = ["demo_run"]


def demo_run(model: str, batch: int = 2) -> dict[str, Any]:
    """Build ``model`` (random weights), run ``batch`` seeded random images and count the spikes of every neuron.

    Args:
        model: Registered model name.
        batch: Images in the batch.

    Returns:
        ``model``, ``parameters``, ``input_shape``, ``timesteps``, ``logits_shape``, ``predictions``,
        ``spike_layers`` (neuron modules), ``spikes`` (all neurons, all timesteps) and ``seconds`` (the forward pass).

    Raises:
        ValueError: ``model`` is not a registered name.
    """
    net = create_model(model).eval()
    spikes = [0]
    neurons = 0

    def count(_m: torch.nn.Module, _i: Any, out: torch.Tensor) -> None:
        spikes[0] += int(out.sum())

    for m in net.modules():
        if isinstance(m, BaseNeuron):
            neurons += 1
            m.register_forward_hook(count)
    x = torch.rand(batch, *net.input_shape, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    with torch.inference_mode():
        logits = net(x)
    dt = time.perf_counter() - t0
    return {
        "model": model,
        "parameters": sum(p.numel() for p in net.parameters()),
        "input_shape": [batch, *net.input_shape],
        "timesteps": net.timesteps,
        "logits_shape": list(logits.shape),
        "predictions": logits.argmax(1).tolist(),
        "spike_layers": neurons,
        "spikes": spikes[0],
        "seconds": round(dt, 4),
    }
