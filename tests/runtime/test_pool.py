import pytest
import torch
from torch import nn

from spikeformer.runtime.pool import SeparableMaxPool2d, to_separable_pooling


@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (3, 3, 0)])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (5, 4)])
def test_separable_pooling_is_identical(k, s, p, hw):
    x = torch.randn(2, 3, *hw)
    assert torch.equal(SeparableMaxPool2d(k, s, p)(x), nn.MaxPool2d(k, s, p)(x))


def test_only_plain_square_pools_are_replaced():
    model = nn.Sequential(nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.MaxPool2d((2, 3)))
    to_separable_pooling(model)
    assert [type(m).__name__ for m in model] == ["SeparableMaxPool2d", "MaxPool2d", "MaxPool2d"]
