"""Dataset loaders: Fashion-MNIST (real files when installed), digits, image folders, load_dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spikeformer.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEFAULT_ROOT,
    ArrayDataset,
    DatasetNotFoundError,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_image_folder,
    write_idx,
)

_HAVE_FASHION = (FASHION_MNIST_DEFAULT_ROOT / "t10k-images-idx3-ubyte.gz").is_file() or (
    FASHION_MNIST_DEFAULT_ROOT / "t10k-images-idx3-ubyte"
).is_file()


# ----------------------------------------------------------------------------------------------- ArrayDataset


def test_array_dataset_item_and_validation() -> None:
    ds = ArrayDataset(np.zeros((3, 1, 2, 2), np.uint8), np.array([0, 1, 1]), ["a", "b"], "toy")
    assert len(ds) == 3 and ds.labels.dtype == torch.int64 and ds.classes == ("a", "b")
    image, label = ds[1]
    assert image.shape == (1, 2, 2) and image.dtype == torch.uint8 and label == 1 and isinstance(label, int)
    assert ds.image_shape == (1, 2, 2) and ds.num_classes == 2
    with pytest.raises(IndexError):
        ds[3]
    assert len(list(ds)) == 3
    sub = ds.subset([2, 0])
    assert sub.labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match="uint8"):
        ArrayDataset(torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.int64), ("a",), "toy")
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        ArrayDataset(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), ("a",), "toy")
    with pytest.raises(ValueError, match="accepted: 0..1"):
        ArrayDataset(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), torch.tensor([2]), ("a", "b"), "toy")


# ---------------------------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.skipif(not _HAVE_FASHION, reason=f"Fashion-MNIST not installed at {FASHION_MNIST_DEFAULT_ROOT}")
def test_real_fashion_mnist_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPIKEFORMER_FASHION_MNIST", raising=False)
    ds = load_fashion_mnist("test")
    assert ds.images.shape == (10_000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64
    assert ds.classes == FASHION_MNIST_CLASSES and len(ds.classes) == 10
    assert torch.bincount(ds.labels, minlength=10).tolist() == [1000] * 10
    assert ds.name == "fashion-mnist"


def test_fashion_mnist_missing_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as info:
        load_fashion_mnist("test", root=missing)
    assert str(missing) in str(info.value) and "SPIKEFORMER_FASHION_MNIST" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    monkeypatch.setenv("SPIKEFORMER_FASHION_MNIST", str(missing))
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        load_dataset("fashion-mnist", "train")


def test_fashion_mnist_from_written_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1], dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)  # plain
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)  # gzipped
    monkeypatch.setenv("SPIKEFORMER_FASHION_MNIST", str(tmp_path))
    ds = load_fashion_mnist("test")
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), images)
    assert ds.labels.tolist() == [0, 9, 3, 3, 1]
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte"):
        load_fashion_mnist("train")


def test_fashion_mnist_label_count_mismatch(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="expected 3 uint8 labels"):
        load_fashion_mnist("test", root=tmp_path)


# ----------------------------------------------------------------------------------------------------- digits


def test_digits_shapes_and_disjoint_split() -> None:
    train, test = load_digits("train"), load_digits("test")
    assert train.images.shape == (1437, 1, 8, 8) and test.images.shape == (360, 1, 8, 8)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert train.classes == tuple("0123456789")
    assert torch.bincount(test.labels, minlength=10).min() >= 35  # stratified: ~36 per class
    # Train and test partition the 1,797 samples: their multisets of (pixels, label) add up to the full set.
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    full = np.rint(bunch.images * 255 / 16).astype(np.uint8)
    everything = Counter((img.tobytes(), int(y)) for img, y in zip(full, bunch.target, strict=True))

    def counts(ds: ArrayDataset) -> Counter:
        return Counter((img.numpy().tobytes(), int(y)) for img, y in zip(ds.images[:, 0], ds.labels, strict=True))

    assert counts(train) + counts(test) == everything


def test_digits_deterministic_and_seeded() -> None:
    a, b, c = load_digits("test", seed=0), load_digits("test", seed=0), load_digits("test", seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert len(load_digits("test", test_fraction=0.5)) in (898, 899)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 2])
def test_digits_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits("train", test_fraction=fraction)


# ----------------------------------------------------------------------------------------------- image folder


def _png(path: Path, value: int, size: tuple[int, int] = (6, 4), mode: str = "L") -> None:
    """Write a uniform image of ``size`` = (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_image_folder_two_classes(tmp_path: Path) -> None:
    _png(tmp_path / "dog" / "a.png", 10)
    _png(tmp_path / "dog" / "b.PNG", 20)
    _png(tmp_path / "cat" / "c.png", 30)
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    ds = load_image_folder(tmp_path)
    assert ds.classes == ("cat", "dog")
    assert ds.images.shape == (3, 1, 4, 6) and ds.images.dtype == torch.uint8
    by_value = {int(img[0, 0, 0]): int(label) for img, label in zip(ds.images, ds.labels, strict=True)}
    assert by_value == {30: 0, 10: 1, 20: 1}


def test_image_folder_rgb_resize_and_channels(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "x.png", 100, size=(5, 5), mode="RGB")
    _png(tmp_path / "b" / "y.bmp", 200, size=(7, 3), mode="RGB")
    ds = load_image_folder(tmp_path, image_size=(4, 6))
    assert ds.images.shape == (2, 3, 4, 6)
    assert ds.images[0, :, 0, 0].tolist() == [100, 0, 155]
    gray = load_image_folder(tmp_path, image_size=(4, 6), channels=1)
    assert gray.images.shape == (2, 1, 4, 6)


def test_image_folder_splits(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "a" / "1.png", 1)
    _png(tmp_path / "train" / "b" / "2.png", 2)
    _png(tmp_path / "test" / "b" / "3.png", 3)
    train = load_image_folder(tmp_path, split="train")
    test = load_dataset(f"folder:{tmp_path}", split="test")
    assert train.classes == test.classes == ("a", "b")
    assert len(train) == 2 and test.labels.tolist() == [1]
    assert len(load_dataset("folder", root=tmp_path)) == 2


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class sub-folders.*\\.png"):
        load_image_folder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="no images.*accepted extensions: .png, .jpg, .jpeg, .bmp"):
        load_image_folder(tmp_path)
    _png(tmp_path / "a" / "x.png", 1)
    with pytest.raises(ValueError, match="no images"):  # one image per class: all of it is training data
        load_image_folder(tmp_path, split="test")


def test_unsplit_folder_is_split_every_fifth_image(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        for i in range(10):
            _png(tmp_path / cls / f"{i:02d}.png", 10 * i + (cls == "b"))
    train = load_image_folder(tmp_path, split="train")
    test = load_dataset(f"folder:{tmp_path}", split="test")
    everything = load_dataset(f"folder:{tmp_path}", split=None)
    assert (len(train), len(test), len(everything)) == (16, 4, 20)
    assert sorted(int(x) for x in test.images[:, 0, 0, 0]) == [40, 41, 90, 91]
    assert not set(train.images[:, 0, 0, 0].tolist()) & set(test.images[:, 0, 0, 0].tolist())


def test_image_folder_mixed_sizes(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "x.png", 1, size=(6, 4))
    _png(tmp_path / "b" / "y.png", 1, size=(5, 4))
    with pytest.raises(ValueError, match=r"y\.png is 5x4.*image_size"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, image_size=(4, 6)).images.shape == (2, 1, 4, 6)


def test_image_folder_unreadable_file(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "x.png", 1)
    (tmp_path / "a" / "y.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image .*y\.jpg"):
        load_image_folder(tmp_path)


# ----------------------------------------------------------------------------------------------- load_dataset


def test_load_dataset_names_and_errors() -> None:
    assert load_dataset("Digits", "test").name == "digits"
    with pytest.raises(ValueError, match="did you mean 'fashion-mnist'") as info:
        load_dataset("fashion-mnst")
    assert "'digits'" in str(info.value) and "folder:<path>" in str(info.value)
    with pytest.raises(ValueError, match="accepted: 'train', 'test'"):
        load_dataset("digits", split="val")
    with pytest.raises(ValueError, match="needs a path"):
        load_dataset("folder")
    with pytest.raises(ValueError, match="takes no root"):
        load_dataset("digits", root="/tmp")
