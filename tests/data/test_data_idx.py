"""IDX reader/writer: round trips and corrupt-file errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from spikeformer.data import read_idx, write_idx


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_round_trip_uint8(tmp_path: Path, name: str) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip_other_dtypes(tmp_path: Path, dtype: type) -> None:
    array = (np.arange(10) - 5).astype(dtype)
    back = read_idx(write_idx(tmp_path / "x.idx", array))
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, array)


def test_known_header_bytes(tmp_path: Path) -> None:
    # MNIST labels header: 0x00000801, then count 3 big-endian.
    raw = b"\x00\x00\x08\x01\x00\x00\x00\x03" + bytes([7, 2, 9])
    (tmp_path / "labels").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), [7, 2, 9])


def test_truncated_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "a.idx", np.zeros((4, 5, 5), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_truncated_gzip(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "a.gz", np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "a.idx", np.zeros(3, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ValueError, match="trailing"):
        read_idx(path)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x12\x34\x08\x01\x00\x00\x00\x00", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x00", "type code 0x07"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (b"\x00\x00", "shorter than"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
    ],
)
def test_corrupt_header(tmp_path: Path, raw: bytes, match: str) -> None:
    (tmp_path / "bad").write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        read_idx(tmp_path / "bad")


def test_huge_declared_size_is_rejected_without_allocating(tmp_path: Path) -> None:
    raw = b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3
    (tmp_path / "huge.gz").write_bytes(gzip.compress(raw))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "huge.gz")


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="accepted"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))
