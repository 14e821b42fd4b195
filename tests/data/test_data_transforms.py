"""Preprocess normalisation and batch augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spikeformer.data import Preprocess, load_digits, random_crop, random_horizontal_flip


def test_preprocess_exact_values() -> None:
    pre = Preprocess(mean=(0.5,), std=(0.25,), image_size=(2, 2))
    images = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)  # [N, H, W]
    out = pre(images)
    expected = torch.tensor([[[[-2.0, 2.0], [-1.2, -0.4]]]])
    assert out.dtype == torch.float32 and out.shape == (1, 1, 2, 2)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(pre(images.numpy()[:, None]), expected, atol=1e-6)


def test_preprocess_per_channel() -> None:
    pre = Preprocess(scale=1.0, mean=(0.0, 1.0, 2.0), std=(1.0, 2.0, 4.0), channels=3, image_size=(1, 1))
    out = pre(torch.tensor([[[[1.0]], [[3.0]], [[6.0]]]]))
    assert out.flatten().tolist() == [1.0, 1.0, 1.0]


def test_preprocess_shape_and_dtype_errors() -> None:
    pre = Preprocess()
    with pytest.raises(ValueError, match=r"received images of shape \[2, 3, 28, 28\]; accepted: \[N, 28, 28\] or "):
        pre(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"shape \[2, 1, 8, 8\]"):
        pre(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"shape \[28, 28\]"):
        pre(torch.zeros(28, 28, dtype=torch.uint8))
    rgb = Preprocess(channels=3, image_size=(4, 4))
    with pytest.raises(ValueError, match=r"accepted: \[N, 3, 4, 4\]$"):
        rgb(torch.zeros(2, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="scale=1.0"):
        pre(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="int64"):
        pre(torch.zeros(2, 28, 28, dtype=torch.int64))
    with pytest.raises(ValueError, match="mean has 2 values"):
        Preprocess(mean=(0.1, 0.2))
    with pytest.raises(ValueError, match="std must be > 0"):
        Preprocess(std=(0.0,))


def test_preprocess_dict_round_trip() -> None:
    pre = Preprocess(scale=0.5, mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 3.0), channels=3, image_size=(32, 16))
    data = json.loads(json.dumps(pre.to_dict()))
    assert Preprocess.from_dict(data) == pre
    del data["std"]
    data["gamma"] = 2
    with pytest.raises(ValueError, match=r"missing keys \['std'\]; unknown keys \['gamma'\]"):
        Preprocess.from_dict(data)


def test_for_dataset() -> None:
    fashion = Preprocess.for_dataset("fashion-mnist")
    assert fashion.image_size == (28, 28) and fashion.channels == 1
    assert fashion.mean == (0.2860,) and fashion.std == (0.3530,)
    digits = Preprocess.for_dataset("digits")
    assert digits.image_size == (8, 8)
    out = digits(load_digits("train").images)  # hardcoded stats match the data
    assert abs(out.mean().item()) < 1e-3 and abs(out.std().item() - 1.0) < 1e-3
    with pytest.raises(ValueError, match="accepted: 'fashion-mnist', 'digits'"):
        Preprocess.for_dataset("cifar10")


def test_random_crop_determinism_and_content() -> None:
    images = torch.randint(1, 256, (16, 3, 8, 8), dtype=torch.uint8)
    a = random_crop(images, 2, generator=torch.Generator().manual_seed(3))
    b = random_crop(images, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == images.shape and a.dtype == torch.uint8
    # Each crop is a shifted copy: reproduce it with an explicit pad + slice.
    g = torch.Generator().manual_seed(3)
    offsets = torch.randint(0, 5, (2, 16), generator=g)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for n in range(16):
        y, x = int(offsets[0, n]), int(offsets[1, n])
        assert torch.equal(a[n], padded[n, :, y : y + 8, x : x + 8])
    assert torch.equal(random_crop(images, 0), images)
    floats = random_crop(images.float(), 4, generator=torch.Generator().manual_seed(0))
    assert floats.dtype == torch.float32
    with pytest.raises(ValueError, match="padding"):
        random_crop(images, -1)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        random_crop(images[0], 2)


def test_random_flip() -> None:
    images = torch.rand(10, 2, 4, 5)
    once = random_horizontal_flip(images, p=1.0)
    assert torch.equal(once, images.flip(-1))
    assert torch.equal(random_horizontal_flip(once, p=1.0), images)
    assert torch.equal(random_horizontal_flip(images, p=0.0), images)
    a = random_horizontal_flip(images, generator=torch.Generator().manual_seed(5))
    b = random_horizontal_flip(images, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    flipped = [not torch.equal(a[i], images[i]) for i in range(10)]
    assert 0 < sum(flipped) < 10  # seed 5 flips some, not all
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        random_horizontal_flip(images, p=1.5)


def test_numpy_input_to_preprocess() -> None:
    arr = np.full((2, 28, 28), 255, dtype=np.uint8)
    assert torch.allclose(Preprocess()(arr), torch.ones(2, 1, 28, 28))
