"""Process memory of long-running inference: resident memory that follows the working set and comes back.

A batch of 256 images of the bundled model allocates activations of 10-100 MB each. With glibc's defaults the
resident set of ``spikeformer serve`` went from about 650 MB to 1.4-1.6 GB after a few such batches and stayed there,
although the working set of one 256-image batch is about 200 MB. The cause is glibc's *dynamic mmap threshold*:
allocations above ``M_MMAP_THRESHOLD`` (128 KiB at start) get their own ``mmap`` and go back to the kernel when
freed, but freeing such a block raises the threshold to its size (up to 32 MiB), so from then on every tensor below
32 MiB comes from the malloc heaps (one arena per thread), where the freed blocks of different batch sizes fragment
the heaps and stay resident. PyTorch's CPU allocator caches nothing itself (it calls ``posix_memalign``/``free``), and
the runtime's own caches are bounded by count (oneDNN-packed int8 weights: ``int8.PACKED_SHAPES`` input shapes per
convolution; event-driven calibrations: one per power-of-4 range of input rows; CUDA graphs: ``max_graphs``).

:func:`configure_allocator` fixes the threshold (``mallopt(M_MMAP_THRESHOLD)``, which also turns the dynamic
adjustment off, and ``M_TRIM_THRESHOLD``), so large tensors are always mapped and unmapped, and asks PyTorch to place
its allocations of 2 MB and more on transparent huge pages (``THP_MEM_ALLOC_ENABLE=1``, read by torch at its first
allocation: set before torch is imported), which divides the page faults of those fresh mappings by about 16 (from
about 1.1 million to 70,000 per 256-image batch; figures in ``docs/benchmarks.md``). :func:`release_free_memory`
(``malloc_trim``) hands the free pages inside the heaps back to the kernel. On a C library other than glibc (musl,
macOS) they do nothing and say so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys
from dataclasses import dataclass

__all__ = [
    "MAX_MMAP_THRESHOLD",
    "THP_ENV",
    "AllocatorConfig",
    "configure_allocator",
    "release_free_memory",
]

log = logging.getLogger(__name__)

THP_ENV = "THP_MEM_ALLOC_ENABLE"  # PyTorch (c10/core/impl/alloc_cpu.cpp): madvise(MADV_HUGEPAGE) allocations >= 2 MB
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's HEAP_MAX_SIZE / 2 on 64-bit: mallopt refuses larger thresholds
_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3


@dataclass(frozen=True)
class AllocatorConfig:
    """What :func:`configure_allocator` put in force.

    Attributes:
        mmap_threshold_bytes: the fixed glibc mmap (and trim) threshold, ``None`` where glibc's dynamic default stays
            (not asked for, or not glibc).
        huge_pages: whether PyTorch places its large CPU allocations on transparent huge pages in this process.
    """

    mmap_threshold_bytes: int | None
    huge_pages: bool


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else ``None``."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") and hasattr(libc, "gnu_get_libc_version")):
        return None
    return libc


def configure_allocator(mmap_threshold_bytes: int, huge_pages: bool) -> AllocatorConfig:
    """Bound the process's resident memory to what its tensors use (see the module docstring).

    Call it once, early, from the command that starts a long-running process (``spikeformer serve``, ``spikeformer
    worker``); huge pages take effect only when it runs before ``torch`` is imported.

    Args:
        mmap_threshold_bytes: allocations of at least this many bytes get their own mapping, returned to the kernel
            when freed (1 to :data:`MAX_MMAP_THRESHOLD`); 0 keeps glibc's dynamic threshold.
        huge_pages: ask PyTorch to advise transparent huge pages for allocations of 2 MB and more (``THP_ENV``; a
            value already in the environment wins).

    Returns:
        What is in force afterwards.

    Raises:
        ValueError: ``mmap_threshold_bytes`` outside ``[0, MAX_MMAP_THRESHOLD]``.
    """
    if not 0 <= mmap_threshold_bytes <= MAX_MMAP_THRESHOLD:
        raise ValueError(f"mmap_threshold_bytes must be between 0 and {MAX_MMAP_THRESHOLD}, got {mmap_threshold_bytes}")
    if huge_pages and "torch" not in sys.modules:
        os.environ.setdefault(THP_ENV, "1")
    elif huge_pages and os.environ.get(THP_ENV) != "1":
        log.warning("torch was imported before the allocator was configured: no transparent huge pages")
    threshold = None
    libc = _glibc()
    if mmap_threshold_bytes and libc is None:
        log.warning("not glibc: the malloc mmap threshold stays the C library's default")
    elif mmap_threshold_bytes:
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold_bytes) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, mmap_threshold_bytes) == 1 and ok
        threshold = mmap_threshold_bytes if ok else None
    return AllocatorConfig(threshold, os.environ.get(THP_ENV) == "1")


def release_free_memory() -> bool:
    """Return the free pages of every malloc arena to the kernel (glibc ``malloc_trim(0)``); ``True`` when some
    memory was released, ``False`` when none was or the C library is not glibc."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
