"""Reader and writer for IDX files, the format of MNIST and Fashion-MNIST.

Layout (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"), all integers big-endian:

* bytes 0-1: zero;
* byte 2: element type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32,
  ``0x0D`` float32, ``0x0E`` float64);
* byte 3: number of dimensions ``D``;
* ``D`` unsigned 32-bit sizes, then the ``prod(sizes)`` elements in C order.

Files may be gzip-compressed; compression is detected from the content (the gzip magic bytes ``1f 8b``),
not the file name.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "read_idx", "write_idx"]

#: IDX element type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def _codes_text() -> str:
    return ", ".join(f"0x{code:02X} ({dtype.name})" for code, dtype in IDX_DTYPES.items())


def _read_bytes(path: Path) -> bytes:
    """Return the decompressed content of ``path`` (gzip detected by its magic bytes)."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file, plain or gzip-compressed.

    Args:
        path: File to read.

    Returns:
        A writable array in native byte order with the shape and element type stored in the file
        (``uint8`` for MNIST images and labels).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is not a valid IDX file: bad magic number, unknown type code, or a data
            section shorter or longer than the header's sizes imply (truncated or corrupt file).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(data)} bytes, shorter than the 4-byte magic number")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file: magic number starts with bytes 0x{data[0]:02X} 0x{data[1]:02X}, "
            "expected 0x00 0x00"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX element type code 0x{code:02X}; accepted: {_codes_text()}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions; accepted: 1 to 255")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_len} header bytes, file has {len(data)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX file {what}: header says shape {shape} of {dtype.name} = {expected} data bytes, "
            f"file has {actual}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    # astype copies into native byte order, which also makes the array writable (frombuffer views are read-only).
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file.

    Args:
        path: Destination file.
        array: Array with 1 to 255 dimensions, each smaller than 2**32, of one of the IDX element types
            (uint8, int8, int16, int32, float32, float64).
        compress: gzip the file; ``None`` compresses when ``path`` ends in ``.gz``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: The array's dtype or shape cannot be stored in IDX.
    """
    path = Path(path)
    array = np.asarray(array)
    matches = [code for code, dtype in IDX_DTYPES.items() if dtype.newbyteorder("=") == array.dtype.newbyteorder("=")]
    if not matches:
        accepted = ", ".join(d.name for d in IDX_DTYPES.values())
        raise ValueError(f"cannot write dtype {array.dtype} to IDX; accepted: {accepted}")
    if not 1 <= array.ndim <= 255 or any(s >= 2**32 for s in array.shape):
        raise ValueError(f"cannot write shape {array.shape} to IDX; accepted: 1 to 255 dimensions, each < 2**32")
    code = matches[0]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path
