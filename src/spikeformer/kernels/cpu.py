"""Compiled CPU kernels (``csrc/kernels.cpp``), built once per machine on first use and cached by PyTorch.

``get()`` returns the extension module, or ``None`` when it cannot be built here (no C++ compiler, no ninja,
``SPIKEFORMER_KERNELS=0`` (the ``kernels`` field of :class:`spikeformer.settings.Settings`), not an x86/ARM Linux or
macOS host): every caller then takes its plain-torch path, which computes the same thing more slowly. The reason is
logged once and kept in ``unavailable_reason()``. The settings are read on the first call only.

The extension's name (``spikeformer_kernels_<cpu tag>``) and build flags name PyTorch's build cache
(``~/.cache/torch_extensions``): a machine builds once and every later process loads the cached library.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from types import ModuleType

import torch

from spikeformer.settings import get_settings

__all__ = ["get", "available", "unavailable_reason"]

log = logging.getLogger(__name__)
_SOURCE = Path(__file__).with_name("csrc") / "kernels.cpp"
_lock = threading.Lock()
_state: dict = {"done": False, "module": None, "reason": None}

# -O3 -march=native: vectorised for this CPU (the build is cached per machine and per flags).
# -ffp-contract=off: no fused multiply-adds, so the neuron recurrence rounds exactly like the torch reference.
_CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp"]


def _cpu_tag() -> str:
    """Names the build after this CPU's instruction sets: a cached -march=native build never runs on another CPU."""
    capability = str(torch.backends.cpu.get_cpu_capability()).lower()
    try:
        flags = next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(("flags", "Features"))),
            "",
        )
    except OSError:
        flags = ""
    return f"{capability}_{hashlib.sha1(flags.encode()).hexdigest()[:8]}"


def _build() -> ModuleType:
    from torch.utils import cpp_extension

    return cpp_extension.load(
        name=f"spikeformer_kernels_{_cpu_tag()}",
        sources=[str(_SOURCE)],
        extra_cflags=_CFLAGS,
        extra_ldflags=["-fopenmp"],
        verbose=False,
    )


def get() -> ModuleType | None:
    """The kernels module, building it on first call (tens of seconds once per machine); ``None`` if unavailable."""
    if _state["done"]:
        return _state["module"]
    with _lock:
        if not _state["done"]:
            if not get_settings().kernels:
                _state["reason"] = "disabled by SPIKEFORMER_KERNELS=0"
            else:
                try:
                    _state["module"] = _build()
                except Exception as e:  # noqa: BLE001 - any build failure falls back to plain torch
                    _state["reason"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e) else ''}"
            if _state["reason"]:
                log.warning("compiled CPU kernels unavailable (%s); using the plain-torch path", _state["reason"])
            _state["done"] = True
    return _state["module"]


def available() -> bool:
    """Whether the compiled kernels run here (builds them on the first call)."""
    return get() is not None


def unavailable_reason() -> str | None:
    """Why the compiled kernels do not run here (``None`` when they do)."""
    get()
    return _state["reason"]
