"""In-memory mini-batch iteration over an :class:`ArrayDataset`, with optional distributed sharding.

No worker processes: the data already sits in memory, so a batch is one index-select.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from .datasets import ArrayDataset
from .transforms import Preprocess

__all__ = ["iterate_batches", "num_batches"]


def _int_at_least(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {minimum}; received {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}; received {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; received {number}")
    return number


def _check_shard(rank: int, world_size: int) -> tuple[int, int]:
    world_size = _int_at_least(world_size, "world_size", 1)
    rank = _int_at_least(rank, "rank", 0)
    if rank >= world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1} for world_size={world_size}; received {rank}")
    return rank, world_size


def num_batches(num_samples: int, batch_size: int, drop_last: bool = False, *, world_size: int = 1) -> int:
    """Number of batches :func:`iterate_batches` yields per epoch on each rank.

    Each rank holds ``num_samples // world_size`` samples (the remainder is dropped so shards are equal);
    that gives ``ceil(per_rank / batch_size)`` batches, or ``per_rank // batch_size`` with ``drop_last``.
    """
    num_samples = _int_at_least(num_samples, "num_samples", 0)
    batch_size = _int_at_least(batch_size, "batch_size", 1)
    _, world_size = _check_shard(0, world_size)
    per_rank = num_samples // world_size
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


def iterate_batches(
    dataset: ArrayDataset,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    augment: Callable[[Tensor], Tensor] | None = None,
    preprocess: Preprocess | None = None,
    *,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(images, labels)`` mini-batches for one epoch.

    The sample order is ``torch.randperm(N, generator=generator)`` when ``shuffle`` (drawn when this function
    is called, not lazily), else ``0 .. N-1``. With ``world_size > 1`` the order is cut to
    ``N // world_size * world_size`` samples and rank ``r`` takes every ``world_size``-th one starting at
    ``r``: shards are disjoint and equal-size, provided every rank seeds its generator identically.
    Call it once per epoch; a fresh permutation is drawn each time.

    Args:
        dataset: The data.
        batch_size: Samples per batch (>= 1); the last batch may be smaller unless ``drop_last``.
        shuffle: Shuffle the order.
        generator: Random generator for the permutation (CPU).
        drop_last: Skip a final partial batch.
        augment: Applied to each uint8 image batch ``[B, C, H, W]`` before ``preprocess`` (e.g.
            ``functools.partial(random_crop, generator=g)``).
        preprocess: Applied last; without it images stay uint8 ``[B, C, H, W]``.
        rank: This process's index in ``0 .. world_size - 1``.
        world_size: Number of shards.

    Returns:
        An iterator of ``(images, labels int64 [B])``; images are float32 after ``preprocess``.

    Raises:
        ValueError: Invalid ``batch_size``, ``rank`` or ``world_size``.
    """
    if not isinstance(dataset, ArrayDataset):
        raise ValueError(f"iterate_batches needs an ArrayDataset; received {type(dataset).__name__}")
    batch_size = _int_at_least(batch_size, "batch_size", 1)
    rank, world_size = _check_shard(rank, world_size)
    n = len(dataset)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if world_size > 1:
        order = order[: n // world_size * world_size][rank::world_size]
    return _batches(dataset, order, batch_size, drop_last, augment, preprocess)


def _batches(
    dataset: ArrayDataset,
    order: Tensor,
    batch_size: int,
    drop_last: bool,
    augment: Callable[[Tensor], Tensor] | None,
    preprocess: Preprocess | None,
) -> Iterator[tuple[Tensor, Tensor]]:
    order = order.to(dataset.images.device)
    total = len(order)
    stop = total - total % batch_size if drop_last else total
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size]
        images, labels = dataset.images[index], dataset.labels[index]
        if augment is not None:
            images = augment(images)
        if preprocess is not None:
            images = preprocess(images)
        yield images, labels
