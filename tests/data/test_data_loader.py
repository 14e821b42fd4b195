"""iterate_batches: coverage, shuffling, drop_last, sharding, augment/preprocess hooks."""

from __future__ import annotations

import functools

import pytest
import torch

from spikeformer.data import ArrayDataset, Preprocess, iterate_batches, num_batches, random_horizontal_flip


def _toy(n: int = 23) -> ArrayDataset:
    # Image n holds the value n (mod 256), so a batch can be traced back to its sample indices.
    images = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ArrayDataset(images, torch.arange(n) % 3, ("a", "b", "c"), "toy")


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sample_once_per_epoch(shuffle: bool) -> None:
    ds = _toy()
    g = torch.Generator().manual_seed(0)
    batches = list(iterate_batches(ds, 5, shuffle=shuffle, generator=g))
    assert [len(labels) for _, labels in batches] == [5, 5, 5, 5, 3] == [len(i) for i, _ in batches]
    seen = torch.cat([images[:, 0, 0, 0] for images, _ in batches]).long()
    assert sorted(seen.tolist()) == list(range(23))
    assert (seen.tolist() == list(range(23))) is not shuffle
    labels = torch.cat([labels for _, labels in batches])
    assert torch.equal(labels, seen % 3)
    assert len(batches) == num_batches(23, 5)


def test_shuffle_reproducible_and_epochs_differ() -> None:
    ds = _toy()
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    first = [b[1] for b in iterate_batches(ds, 7, shuffle=True, generator=g1)]
    again = [b[1] for b in iterate_batches(ds, 7, shuffle=True, generator=g2)]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    order1 = torch.cat([b[0] for b in iterate_batches(ds, 7, shuffle=True, generator=g1)])
    order2 = torch.cat([b[0] for b in iterate_batches(ds, 7, shuffle=True, generator=g1)])
    assert not torch.equal(order1, order2)


def test_drop_last() -> None:
    sizes = [len(labels) for _, labels in iterate_batches(_toy(), 5, drop_last=True)]
    assert sizes == [5, 5, 5, 5] and num_batches(23, 5, drop_last=True) == 4


def test_shards_disjoint_equal() -> None:
    ds = _toy(23)
    shards = []
    for rank in range(4):
        g = torch.Generator().manual_seed(11)  # same seed on every rank
        batches = iterate_batches(ds, 2, shuffle=True, generator=g, rank=rank, world_size=4)
        shards.append(torch.cat([images[:, 0, 0, 0] for images, _ in batches]).tolist())
    assert [len(s) for s in shards] == [5, 5, 5, 5]
    union = set().union(*map(set, shards))
    assert len(union) == 20 and union <= set(range(23))
    assert num_batches(23, 2, world_size=4) == 3
    with pytest.raises(ValueError, match="rank must be in 0..3"):
        iterate_batches(ds, 2, rank=4, world_size=4)
    with pytest.raises(ValueError, match="world_size"):
        iterate_batches(ds, 2, world_size=0)


def test_augment_and_preprocess_hooks() -> None:
    ds = _toy(6)
    flip = functools.partial(random_horizontal_flip, p=1.0)
    pre = Preprocess(image_size=(2, 2))
    images, labels = next(iterate_batches(ds, 4, augment=flip, preprocess=pre))
    assert images.dtype == torch.float32 and images.shape == (4, 1, 2, 2)
    assert torch.allclose(images[:, 0, 0, 0], torch.arange(4) / 255)
    raw, _ = next(iterate_batches(ds, 4))
    assert raw.dtype == torch.uint8


def test_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; received 0"):
        iterate_batches(_toy(), 0)
