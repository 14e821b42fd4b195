"""Spike encoders: shapes, exact values and errors."""

from __future__ import annotations

import pytest
import torch

from spikeformer.data import ENCODERS, SpikeEncoder, direct_encode, encode, latency_encode, poisson_encode


def test_direct_repeats_input_and_keeps_grad() -> None:
    x = torch.rand(3, 2, 5, requires_grad=True)
    out = direct_encode(x, 4)
    assert out.shape == (4, 3, 2, 5)
    for t in range(4):
        assert torch.equal(out[t], x)
    out.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 4.0))


def test_poisson_shape_values_and_rate() -> None:
    x = torch.tensor([[0.0, 0.1, 0.5], [0.9, 1.0, 0.25]])
    g = torch.Generator().manual_seed(1234)
    out = poisson_encode(x, 4000, generator=g)
    assert out.shape == (4000, 2, 3) and out.dtype == torch.float32
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    rate = out.mean(0)
    # Standard error <= 0.5 / sqrt(4000) ~ 0.008; 0.04 is 5 sigma, and the seed is fixed.
    assert torch.allclose(rate, x, atol=0.04)
    assert rate[0, 0] == 0.0 and rate[1, 1] == 1.0


def test_poisson_reproducible_with_generator() -> None:
    x = torch.rand(8, 3)
    a = poisson_encode(x, 5, generator=torch.Generator().manual_seed(7))
    b = poisson_encode(x, 5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_latency_spike_times_exact() -> None:
    # T = 5: t = round((1 - x) * 4).
    x = torch.tensor([[1.0, 0.75, 0.5, 0.25, 0.005, 0.0]])
    out = latency_encode(x, 5)
    assert out.shape == (5, 1, 6)
    expected_times = {0: 0, 1: 1, 2: 2, 3: 3}
    for i in range(6):
        column = out[:, 0, i]
        if i in expected_times:
            assert column.sum() == 1 and int(column.argmax()) == expected_times[i]
        else:  # at or below the 0.01 threshold: silent
            assert column.sum() == 0
    # 0.2 -> (1 - 0.2) * 4 = 3.2 -> step 3; with threshold 0.3 it is silent.
    assert int(latency_encode(torch.tensor([0.2]), 5)[:, 0].argmax()) == 3
    assert latency_encode(torch.tensor([0.2]), 5, threshold=0.3).sum() == 0
    assert torch.equal(latency_encode(torch.tensor([0.5]), 1), torch.tensor([[1.0]]))


def test_encode_dispatch_and_module() -> None:
    x = torch.rand(2, 3)
    assert set(ENCODERS) == {"direct", "poisson", "latency"}
    assert torch.equal(encode(x, 3), direct_encode(x, 3))
    assert torch.equal(encode(x, 3, "latency", threshold=0.1), latency_encode(x, 3, threshold=0.1))
    module = SpikeEncoder("poisson", 6, generator=torch.Generator().manual_seed(0))
    assert module(x).shape == (6, 2, 3)


@pytest.mark.parametrize("timesteps", [0, -1, 2.5, True, "4"])
def test_bad_timesteps(timesteps: object) -> None:
    for method in ENCODERS:
        with pytest.raises(ValueError, match="timesteps must be an integer >= 1"):
            encode(torch.rand(2), timesteps, method)  # type: ignore[arg-type]


def test_bad_method_and_range() -> None:
    with pytest.raises(ValueError, match="accepted: 'direct', 'poisson', 'latency'"):
        encode(torch.rand(2), 4, "rate")
    with pytest.raises(ValueError, match=r"values in \[0, 1\].*max 255"):
        poisson_encode(torch.tensor([0, 255], dtype=torch.uint8), 4)
    with pytest.raises(ValueError, match=r"min -0.5"):
        latency_encode(torch.tensor([-0.5, 0.5]), 4)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        poisson_encode(torch.tensor([float("nan")]), 4)
    with pytest.raises(ValueError, match="threshold"):
        latency_encode(torch.rand(3), 4, threshold=1.5)
