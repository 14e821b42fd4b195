"""Normalisation (:class:`Preprocess`) and batch augmentation of image tensors ``[N, C, H, W]``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["Preprocess", "random_crop", "random_horizontal_flip"]

# Standard statistics of the training splits, on pixels scaled to [0, 1].
# Fashion-MNIST: the usual published values (60,000 training images).
_FASHION_MNIST_MEAN, _FASHION_MNIST_STD = 0.2860, 0.3530
# Digits: computed once from load_digits("train") (default test_fraction=0.2, seed=0, 1,437 images):
# mean 0.305434, std 0.375957.
_DIGITS_MEAN, _DIGITS_STD = 0.3054, 0.3760


def _floats(value: Any, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in (value if isinstance(value, list | tuple) else (value,)))
    except (TypeError, ValueError):
        raise ValueError(f"Preprocess.{name} must be a number or a sequence of numbers; received {value!r}") from None
    return values


@dataclass
class Preprocess:
    """Turn raw pixels into normalised float32 inputs: ``out = (images * scale - mean[c]) / std[c]``.

    Input dtype rule: ``uint8`` pixels are always accepted. Floating-point input is accepted only when
    ``scale == 1.0`` (it is taken to be already scaled, e.g. to [0, 1]); with any other scale it is
    rejected, so float images in [0, 1] are never silently divided by 255 a second time. Other integer
    dtypes are rejected.

    Attributes:
        scale: Factor applied to the raw values first (1/255 maps uint8 pixels to [0, 1]).
        mean: Per-channel mean subtracted after scaling; one value (shared by all channels) or ``channels``.
        std: Per-channel standard deviation divided by; one value or ``channels``, all > 0.
        channels: Expected number of channels ``C``.
        image_size: Expected ``(height, width)``.
    """

    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channels: int = 1
    image_size: tuple[int, int] = (28, 28)

    def __post_init__(self) -> None:
        self.mean = _floats(self.mean, "mean")
        self.std = _floats(self.std, "std")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int | np.integer) or self.channels < 1:
            raise ValueError(f"Preprocess.channels must be an integer >= 1; received {self.channels!r}")
        self.channels = int(self.channels)
        size = tuple(self.image_size) if isinstance(self.image_size, list | tuple) else ()
        if len(size) != 2 or not all(
            isinstance(s, int | np.integer) and not isinstance(s, bool) and s > 0 for s in size
        ):
            raise ValueError(
                f"Preprocess.image_size must be (height, width), two positive ints; received {self.image_size!r}"
            )
        self.image_size = (int(size[0]), int(size[1]))
        try:
            self.scale = float(self.scale)
        except (TypeError, ValueError):
            raise ValueError(f"Preprocess.scale must be a positive number; received {self.scale!r}") from None
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Preprocess.scale must be a positive finite number; received {self.scale!r}")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                raise ValueError(f"Preprocess.{name} has {len(values)} values; accepted: 1 or channels={self.channels}")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"Preprocess.{name} must be finite; received {values}")
        if not all(s > 0 for s in self.std):
            raise ValueError(f"Preprocess.std must be > 0; received {self.std}")

    def _accepted_shapes(self) -> str:
        h, w = self.image_size
        shapes = f"[N, {self.channels}, {h}, {w}]"
        return f"[N, {h}, {w}] or {shapes}" if self.channels == 1 else shapes

    def __call__(self, images: Tensor | np.ndarray) -> Tensor:
        """Normalise a batch.

        Args:
            images: ``[N, C, H, W]``, or ``[N, H, W]`` when ``channels == 1``; a torch tensor (device kept)
                or numpy array; dtype per the class docstring.

        Returns:
            Contiguous float32 tensor ``[N, C, H, W]``.

        Raises:
            ValueError: Wrong type, dtype, rank, channel count or height/width (the message gives the
                received and the accepted shapes).
        """
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if not isinstance(images, Tensor):
            raise ValueError(f"Preprocess needs a torch.Tensor or numpy array; received {type(images).__name__}")
        if images.dtype != torch.uint8:
            if not images.is_floating_point():
                raise ValueError(f"Preprocess accepts uint8 or floating-point images; received dtype {images.dtype}")
            if self.scale != 1.0:
                raise ValueError(
                    f"Preprocess received {images.dtype} images but scale={self.scale:g} is meant for raw uint8 "
                    "pixels; pass uint8 images, or use a Preprocess with scale=1.0 for already-scaled floats"
                )
        shape = tuple(images.shape)
        if images.dim() == 3 and self.channels == 1:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.shape[1] != self.channels or tuple(images.shape[2:]) != self.image_size:
            raise ValueError(f"Preprocess received images of shape {list(shape)}; accepted: {self._accepted_shapes()}")
        mean = torch.tensor(self.mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
        return ((images.to(torch.float32) * self.scale - mean) / std).contiguous()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (tuples become lists) that :meth:`from_dict` reads back."""
        data = asdict(self)
        data["mean"], data["std"], data["image_size"] = list(self.mean), list(self.std), list(self.image_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        """Build from a dict with exactly the keys of :meth:`to_dict`.

        Raises:
            ValueError: Not a dict, missing or unknown keys (named in the message), or invalid values.
        """
        if not isinstance(data, dict):
            raise ValueError(f"Preprocess.from_dict needs a dict; received {type(data).__name__}")
        expected = [f.name for f in fields(cls)]
        missing = [k for k in expected if k not in data]
        unknown = sorted(str(k) for k in data if k not in expected)
        if missing or unknown:
            parts = [f"missing keys {missing}"] if missing else []
            parts += [f"unknown keys {unknown}"] if unknown else []
            raise ValueError(f"Preprocess.from_dict: {'; '.join(parts)}; accepted keys: {expected}")
        return cls(**{k: data[k] for k in expected})

    @classmethod
    def for_dataset(cls, name: str) -> Preprocess:
        """Standard preprocessing for a known dataset: ``"fashion-mnist"`` (28x28x1) or ``"digits"`` (8x8x1).

        Means and standard deviations are those of the training split on pixels scaled by 1/255
        (Fashion-MNIST 0.2860/0.3530; digits 0.3054/0.3760).

        Raises:
            ValueError: Any other name, listing the accepted ones.
        """
        key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
        if key in ("fashion-mnist", "fashionmnist"):
            return cls(mean=(_FASHION_MNIST_MEAN,), std=(_FASHION_MNIST_STD,), channels=1, image_size=(28, 28))
        if key == "digits":
            return cls(mean=(_DIGITS_MEAN,), std=(_DIGITS_STD,), channels=1, image_size=(8, 8))
        raise ValueError(
            f"no standard preprocessing for dataset {name!r}; accepted: 'fashion-mnist', 'digits' "
            "(build a Preprocess(...) for other data)"
        )


def _check_batch(images: Tensor, name: str) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4:
        got = f"shape {list(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} needs a tensor [N, C, H, W]; received {got}")


def _generator_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def random_crop(images: Tensor, padding: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad each image by ``padding`` pixels on every side, then crop a random ``H x W`` window per sample.

    Equivalent to torchvision's ``RandomCrop(size, padding)`` applied independently to each image, done
    for the whole batch with one gather. Offsets are drawn with ``torch.randint`` from ``generator``
    (on the generator's device, CPU by default), so the same generator state gives the same crops.

    Args:
        images: ``[N, C, H, W]`` of any dtype (uint8 or float).
        padding: Pixels of zero padding per side (>= 0); offsets are uniform in ``0 .. 2 * padding``.
        generator: Source of randomness.

    Returns:
        A new tensor with the shape, dtype and device of ``images``.

    Raises:
        ValueError: Not a 4-d tensor or negative padding.
    """
    _check_batch(images, "random_crop")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"random_crop padding must be an integer >= 0; received {padding!r}")
    n, c, h, w = images.shape
    if padding == 0 or n == 0:
        return images.clone()
    padded = images.new_zeros((n, c, h + 2 * padding, w + 2 * padding))
    padded[:, :, padding : padding + h, padding : padding + w] = images
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=_generator_device(generator))
    offsets = offsets.to(images.device)
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # [N, H]
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # [N, W]
    batch = torch.arange(n, device=images.device)[:, None, None]
    # Advanced indices separated by a slice put their broadcast dims first: result is [N, H, W, C].
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def random_horizontal_flip(images: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability ``p``, independently per sample.

    Args:
        images: ``[N, C, H, W]`` of any dtype.
        p: Flip probability in [0, 1]; ``p = 1`` flips every image (so flipping twice is the identity).
        generator: Source of randomness (one ``torch.rand`` draw of N values).

    Returns:
        A new tensor with the shape, dtype and device of ``images``.

    Raises:
        ValueError: Not a 4-d tensor or ``p`` outside [0, 1].
    """
    _check_batch(images, "random_horizontal_flip")
    if not isinstance(p, int | float) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"random_horizontal_flip p must be a number in [0, 1]; received {p!r}")
    flip = torch.rand(images.shape[0], generator=generator, device=_generator_device(generator)) < p
    flip = flip.to(images.device).view(-1, 1, 1, 1)
    return torch.where(flip, images.flip(-1), images)
