"""In-memory image classification datasets: Fashion-MNIST, scikit-learn digits and image folders.

Every loader returns an :class:`ArrayDataset` holding ``uint8`` images ``[N, C, H, W]`` and ``int64``
labels ``[N]``. Nothing is downloaded and nothing is cached on disk.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from spikeformer.settings import FASHION_MNIST_DEFAULT_ROOT, get_settings

from .idx import read_idx

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEFAULT_ROOT",
    "FASHION_MNIST_ENV",
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "ArrayDataset",
    "DatasetNotAllowedError",
    "DatasetNotFoundError",
    "confine_folder",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
]

#: Accepted ``split`` values.
SPLITS: tuple[str, ...] = ("train", "test")
#: Names accepted by :func:`load_dataset` (``"folder"`` also as ``"folder:<path>"``).
DATASETS: tuple[str, ...] = ("fashion-mnist", "digits", "folder")
#: Environment variable overriding the Fashion-MNIST directory (the setting ``fashion_mnist``).
FASHION_MNIST_ENV = "SPIKEFORMER_FASHION_MNIST"
#: Label names of Fashion-MNIST, index = label.
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: File extensions (lower case) read by :func:`load_image_folder`.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are not where the loader looked; the message says how to get them."""


class DatasetNotAllowedError(ValueError):
    """A folder data set outside the folders the caller may read (:func:`confine_folder`); the message names no path."""


@dataclass
class ArrayDataset(Dataset):
    """A labelled image dataset held in memory; also a :class:`torch.utils.data.Dataset`.

    Attributes:
        images: ``uint8`` tensor ``[N, C, H, W]`` of raw pixel values 0..255. A numpy array is converted.
        labels: ``int64`` tensor ``[N]`` with values in ``0 .. len(classes) - 1``. Any integer dtype or a
            numpy array is converted.
        classes: Class names; ``classes[label]`` names a label.
        name: Dataset name, e.g. ``"fashion-mnist"``.

    Raises:
        ValueError: (at construction) wrong dtype, rank or length, or labels outside the class range.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        if isinstance(self.images, np.ndarray):
            self.images = torch.from_numpy(np.ascontiguousarray(self.images))
        if isinstance(self.labels, np.ndarray):
            self.labels = torch.from_numpy(np.ascontiguousarray(self.labels))
        self.classes = tuple(str(c) for c in self.classes)
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"{self.name}: images must be a uint8 tensor [N, C, H, W]; received {_describe(self.images)}"
            )
        if not isinstance(self.labels, torch.Tensor) or self.labels.dim() != 1:
            raise ValueError(f"{self.name}: labels must be an integer tensor [N]; received {_describe(self.labels)}")
        if self.labels.dtype.is_floating_point or self.labels.dtype.is_complex or self.labels.dtype == torch.bool:
            raise ValueError(f"{self.name}: labels must have an integer dtype; received {self.labels.dtype}")
        self.labels = self.labels.to(torch.int64)
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"{self.name}: {self.images.shape[0]} images but {self.labels.shape[0]} labels; the counts must match"
            )
        if not self.classes:
            raise ValueError(f"{self.name}: classes is empty; give one name per label")
        if self.labels.numel() and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise ValueError(
                f"{self.name}: labels span {int(self.labels.min())}..{int(self.labels.max())}; "
                f"accepted: 0..{len(self.classes) - 1} for {len(self.classes)} classes"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Return ``(image uint8 [C, H, W], label)``; raises IndexError past the end."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{self.name}: index {index} out of range for {n} samples")
        return self.images[index], int(self.labels[index])

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(classes)``."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> ArrayDataset:
        """Return a new dataset with the samples at ``indices`` (copied), same classes and name."""
        index = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        return ArrayDataset(self.images[index], self.labels[index], self.classes, self.name)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor | np.ndarray):
        return f"{type(value).__name__} of dtype {value.dtype} and shape {tuple(value.shape)}"
    return type(value).__name__


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; accepted: {', '.join(repr(s) for s in SPLITS)}")
    return split


# ---------------------------------------------------------------------------------------------- Fashion-MNIST


def _fashion_root(root: str | Path | None) -> Path:
    if root is not None:
        return Path(root)
    return get_settings().fashion_mnist_root


def _find_idx(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    if not root.is_dir():
        where = f"directory {root} does not exist"
    else:
        where = f"neither {root / stem} nor {root / stem}.gz exists"
    raise DatasetNotFoundError(
        f"Fashion-MNIST not found: {where}. Install it with `sudo apt-get install dataset-fashion-mnist` "
        f"(files go to {FASHION_MNIST_DEFAULT_ROOT}), or put the four IDX files (plain or .gz) in a directory "
        f"and pass it as root or set {FASHION_MNIST_ENV}."
    )


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> ArrayDataset:
    """Load Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; MIT licence) from local IDX files.

    The files are those of https://github.com/zalandoresearch/fashion-mnist, as shipped by the Debian
    package ``dataset-fashion-mnist`` (MIT licence), which installs them gzipped in
    ``/usr/share/datasets/fashion-mnist``. Plain (uncompressed) files are read as well.

    Args:
        split: ``"train"`` (60,000 images, ``train-*-ubyte``) or ``"test"`` (10,000, ``t10k-*-ubyte``).
        root: Directory holding the files. Default: the setting ``fashion_mnist`` (``SPIKEFORMER_FASHION_MNIST``)
            when set and non-empty, else ``/usr/share/datasets/fashion-mnist``.

    Returns:
        ``uint8`` images ``[N, 1, 28, 28]``, labels 0..9, :data:`FASHION_MNIST_CLASSES`, name ``"fashion-mnist"``.

    Raises:
        DatasetNotFoundError: A file is missing; the message names the path and how to install the data.
        ValueError: Unknown split, or the files are corrupt or do not look like Fashion-MNIST.
    """
    _check_split(split)
    base = _fashion_root(root)
    image_stem, label_stem = _FASHION_FILES[split]
    image_path, label_path = _find_idx(base, image_stem), _find_idx(base, label_stem)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{image_path}: expected uint8 images of shape [N, 28, 28]; received {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"{label_path}: expected {images.shape[0]} uint8 labels (one per image in {image_path.name}); "
            f"received {labels.dtype} {labels.shape}"
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{label_path}: label {int(labels.max())} out of range; accepted: 0..9")
    return ArrayDataset(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=FASHION_MNIST_CLASSES,
        name="fashion-mnist",
    )


# ---------------------------------------------------------------------------------------------------- digits


def load_digits(split: str = "train", test_fraction: float = 0.2, seed: int = 0) -> ArrayDataset:
    """Load scikit-learn's bundled 8x8 handwritten digits (1,797 images, UCI "optdigits" test set).

    Pixel counts 0..16 are rescaled to ``round(v * 255 / 16)`` in ``uint8``. The train/test split is
    stratified by class (``sklearn.model_selection.train_test_split`` with ``random_state=seed``), so it is
    the same on every call with the same arguments; within a split samples keep their original order.

    Args:
        split: ``"train"`` or ``"test"``.
        test_fraction: Fraction of the 1,797 images in the test split, strictly between 0 and 1
            (0.2 gives 1,437 train / 360 test).
        seed: Random seed of the split.

    Returns:
        ``uint8`` images ``[N, 1, 8, 8]``, labels 0..9, classes ``"0"``..``"9"``, name ``"digits"``.

    Raises:
        ValueError: Unknown split or ``test_fraction`` outside (0, 1) or leaving a split without every class.
    """
    _check_split(split)
    if not isinstance(test_fraction, int | float) or not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be a number strictly between 0 and 1; received {test_fraction!r}")
    from sklearn.datasets import load_digits as _sk_load_digits  # lazy: importing sklearn takes ~1 s
    from sklearn.model_selection import train_test_split

    bunch = _sk_load_digits()
    images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    targets = np.asarray(bunch.target, dtype=np.int64)
    try:
        train_idx, test_idx = train_test_split(
            np.arange(len(targets)), test_size=float(test_fraction), random_state=seed, stratify=targets
        )
    except ValueError as exc:
        raise ValueError(f"test_fraction={test_fraction} cannot give a stratified split of 1797 digits: {exc}") from exc
    index = np.sort(train_idx if split == "train" else test_idx)
    return ArrayDataset(
        images=torch.from_numpy(images[index]).unsqueeze(1),
        labels=torch.from_numpy(targets[index]),
        classes=tuple(str(d) for d in range(10)),
        name="digits",
    )


# ---------------------------------------------------------------------------------------------- image folder


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _image_files(folder: Path) -> list[Path]:
    found = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    return sorted((p for p in found if p.is_file()), key=lambda p: p.name)


def _read_image(path: Path, mode: str | None, size_hw: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if mode is None:
                mode = "L" if img.mode in _GRAY_MODES else "RGB"
            img = img.convert(mode)
            if size_hw is not None and img.size != (size_hw[1], size_hw[0]):
                img = img.resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    return array[:, :, None] if array.ndim == 2 else array


def load_image_folder(
    root: str | Path,
    split: str | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
) -> ArrayDataset:
    """Load a folder of images with one sub-folder per class (``root/<class>/<image>``).

    Classes are the sub-folder names sorted by name (label = position). Files with an extension in
    :data:`IMAGE_EXTENSIONS` (any case) are read with Pillow; other files and hidden entries are skipped.

    If ``root/train`` or ``root/test`` is a directory, the folder is split: ``split`` picks
    ``root/<split>/<class>/...`` (``None`` means ``"train"``) and the classes are the union of the class
    folders of both splits, so labels agree between splits. Otherwise the folder is split deterministically:
    in each class (files sorted by name) every 5th image (positions 4, 9, ...) is ``"test"``, the rest ``"train"``;
    ``None`` loads every image.

    Args:
        root: The folder.
        split: ``None``, ``"train"`` or ``"test"``, see above.
        image_size: ``(height, width)`` to resize every image to (bilinear); ``None`` requires all images to
            share the first image's size.
        channels: 1 converts to grayscale (Pillow mode ``"L"``), 3 to ``"RGB"``; ``None`` picks 1 if the
            first image is grayscale and 3 otherwise.

    Returns:
        ``uint8`` images ``[N, C, H, W]``, labels, class names, name ``"folder:<root>"``.

    Raises:
        DatasetNotFoundError: ``root`` does not exist.
        ValueError: ``root`` is not a directory, has no class folders or no images, the requested split
            folder is missing, images differ in size (without ``image_size``), a file cannot be decoded,
            or ``split``/``image_size``/``channels`` is invalid.
    """
    root = Path(root)
    if split is not None:
        _check_split(split)
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be 1, 3 or None; received {channels!r}")
    if image_size is not None:
        size = tuple(image_size)
        if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
            raise ValueError(f"image_size must be (height, width) with two positive ints; received {image_size!r}")
        image_size = (size[0], size[1])
    if not root.exists():
        raise DatasetNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"image folder root {root} is not a directory")
    accepted = ", ".join(IMAGE_EXTENSIONS)

    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    if split_dirs:
        chosen = split or "train"
        folder = root / chosen
        if not folder.is_dir():
            present = ", ".join(repr(p.name) for p in split_dirs)
            raise ValueError(f"{root} has split folders {present} but no {chosen!r} folder for split={split!r}")
        classes = sorted({d.name for s in split_dirs for d in _class_dirs(s)})
    else:
        folder = root
        classes = [d.name for d in _class_dirs(root)]
    if not classes:
        raise ValueError(
            f"{folder} has no class sub-folders; expected {folder}/<class name>/<image> with extensions {accepted}"
        )

    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_dir = folder / name
        if class_dir.is_dir():
            found = _image_files(class_dir)
            if not split_dirs and split is not None:
                found = [f for i, f in enumerate(found) if (i % 5 == 4) == (split == "test")]
            files.extend(found)
            labels.extend([label] * len(found))
    if not files:
        raise ValueError(
            f"no images in the class folders of {folder} ({', '.join(classes)}); accepted extensions: {accepted}"
        )

    first = _read_image(files[0], None if channels is None else ("L" if channels == 1 else "RGB"), image_size)
    mode = "L" if first.shape[2] == 1 else "RGB"
    images = np.empty((len(files), *first.shape), dtype=np.uint8)
    images[0] = first
    for i, path in enumerate(files[1:], start=1):
        array = _read_image(path, mode, image_size)
        if array.shape != first.shape:
            raise ValueError(
                f"image {path} is {array.shape[1]}x{array.shape[0]} (width x height) but {files[0]} is "
                f"{first.shape[1]}x{first.shape[0]}; pass image_size=(height, width) to resize them all"
            )
        images[i] = array
    return ArrayDataset(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=torch.tensor(labels, dtype=torch.int64),
        classes=tuple(classes),
        name=f"folder:{root}",
    )


def confine_folder(path: str | Path, roots: Sequence[str | Path]) -> Path:
    """The folder ``path`` resolved inside one of ``roots``, the only folders an untrusted caller may read.

    Symbolic links are followed and ``..`` collapsed before the check, so neither leads out of a root; a root
    itself is inside. A relative ``path`` is taken relative to each root in turn (the first where it is a directory
    inside its root wins). The check comes before anything under ``path`` is read, and the error names no path.

    Args:
        path: The folder asked for (absolute, or relative to the roots).
        roots: The folders that may be read; empty: none may.

    Returns:
        The resolved, absolute folder.

    Raises:
        DatasetNotAllowedError: ``roots`` is empty, or ``path`` resolves outside every root.
    """
    accepted = ", ".join(repr(d) for d in DATASETS if d != "folder")
    if not roots:
        raise DatasetNotAllowedError(
            f"folder data sets are not accepted here: no data roots are configured (setting job_data_roots); "
            f"accepted: {accepted}"
        )
    resolved_roots = [Path(os.path.realpath(Path(r).expanduser())) for r in roots]
    try:
        asked = Path(path)
        joined = [asked] if asked.is_absolute() else [root / asked for root in resolved_roots]
        resolved = [Path(os.path.realpath(c, strict=False)) for c in joined]
    except (ValueError, OSError):  # a NUL byte, a name too long for the file system, a symlink loop
        resolved = []
    inside = [p for p in resolved if any(p.is_relative_to(root) for root in resolved_roots)]
    if inside:
        return next((p for p in inside if p.is_dir()), inside[0])
    raise DatasetNotAllowedError(
        "the folder data set is not under any of the data roots (setting job_data_roots): name a folder "
        f"inside one of them, absolute or relative to them, or one of {accepted}"
    )


# ---------------------------------------------------------------------------------------------------- by name


def _normalise_name(name: str) -> str:
    """Lower-case and map ``_`` to ``-`` (``"Fashion_MNIST"`` -> ``"fashion-mnist"``); keeps a folder path as is."""
    if not isinstance(name, str):
        raise ValueError(f"dataset name must be a string; received {type(name).__name__}")
    head, sep, tail = name.strip().partition(":")
    head = head.strip().lower().replace("_", "-")
    return f"{head}{sep}{tail}" if sep else head


def _unknown_name(name: str) -> ValueError:
    head = _normalise_name(name).partition(":")[0]
    close = difflib.get_close_matches(head, DATASETS, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"unknown dataset {name!r}; accepted: {', '.join(repr(d) for d in DATASETS)} (or 'folder:<path>'){hint}"
    )


def load_dataset(
    name: str,
    split: str | None = "train",
    root: str | Path | None = None,
    roots: Sequence[str | Path] | None = None,
) -> ArrayDataset:
    """Load a dataset by name.

    Args:
        name: ``"fashion-mnist"``, ``"digits"``, ``"folder:<path>"`` or ``"folder"`` (with ``root``).
            Case and ``_``/``-`` are ignored in the name (not in the path).
        split: ``"train"`` or ``"test"``; an image folder also takes ``None`` (every image).
        root: Data directory: for Fashion-MNIST see :func:`load_fashion_mnist`; the folder for ``"folder"``;
            must be ``None`` for ``"digits"`` (bundled with scikit-learn).
        roots: ``None`` (the default, for the operator's own commands): any folder may be read. Otherwise the
            only folders a folder data set may lie in (see :func:`confine_folder`; empty: no folder data set).

    Returns:
        The dataset, see the individual loaders.

    Raises:
        ValueError: Unknown name (the message lists the accepted ones and close matches) or split, or a
            ``root`` that the dataset does not take.
        DatasetNotFoundError: The data files are missing.
        DatasetNotAllowedError: A folder outside ``roots``.
    """
    key = _normalise_name(name)
    if split is not None or not key.startswith("folder"):
        _check_split(split)
    if key in ("fashion-mnist", "fashionmnist"):
        return load_fashion_mnist(split, root=root)
    if key == "digits":
        if root is not None:
            raise ValueError(f"dataset 'digits' is bundled with scikit-learn and takes no root; received root={root!r}")
        return load_digits(split)
    if key == "folder" or key.startswith("folder:"):
        path = key.partition(":")[2].strip() if ":" in key else ""
        if path and root is not None and Path(path) != Path(root):
            raise ValueError(f"dataset {name!r} names a folder and root={root!r} names another; give one of them")
        folder = path or root
        if folder is None or folder == "":
            raise ValueError("dataset 'folder' needs a path: use 'folder:<path>' or pass root=<path>")
        if roots is not None:
            folder = confine_folder(folder, roots)
        return load_image_folder(folder, split=split)
    raise _unknown_name(name)
