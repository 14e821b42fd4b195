import pytest
import torch
from torch import nn

from spikeformer.runtime.pool import FastMaxPool2d, separable_max_pool, to_fast_pooling


@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (3, 3, 0)])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (5, 4)])
def test_fast_pooling_is_identical(k, s, p, hw):
    x = torch.randn(2, 3, *hw)
    ref = nn.MaxPool2d(k, s, p)(x)
    with torch.inference_mode():  # the compiled kernel
        assert torch.equal(FastMaxPool2d(k, s, p)(x), ref)
    assert torch.equal(separable_max_pool(x, k, s, p), ref)  # the fallback


def test_only_plain_square_pools_are_replaced():
    model = nn.Sequential(nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.MaxPool2d((2, 3)))
    to_fast_pooling(model)
    assert [type(m).__name__ for m in model] == ["FastMaxPool2d", "MaxPool2d", "MaxPool2d"]
