"""Spikeformer Neuromorphic Kit: build, train, convert, profile, compile and serve spiking transformers.

``import spikeformer`` imports nothing heavy (not even torch): ``create_model``, ``list_models`` and
``load_pipeline`` and every subpackage (``spikeformer.hardware``, ``spikeformer.interop`` ...) are imported on first
use (PEP 562 module ``__getattr__``), so ``spikeformer.interop.from_spikingjelly(...)`` works after a plain
``import spikeformer`` and ``from spikeformer import create_model`` keeps working.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # ``typing.TYPE_CHECKING`` without importing typing (most of this module's import time)

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "load_pipeline"]

# every subpackage and top-level module, reachable as ``spikeformer.<name>`` (imported on first access)
_SUBMODULES = (
    "checkpoint",
    "cli",
    "convert",
    "data",
    "energy",
    "functional",
    "hardware",
    "interop",
    "kernels",
    "models",
    "nn",
    "ops",
    "pipeline",
    "runtime",
    "serve",
    "settings",
    "store",
    "train",
)

# public name -> the module that defines it
_LAZY_NAMES = {
    "create_model": "spikeformer.models",
    "list_models": "spikeformer.models",
    "load_pipeline": "spikeformer.pipeline",
}

if TYPE_CHECKING:  # what static tools see; at run time these come from ``__getattr__``
    from typing import Any

    from spikeformer.models import create_model, list_models
    from spikeformer.pipeline import load_pipeline


def __getattr__(name: str) -> Any:
    """Import a subpackage or a lazily re-exported name on first access (later accesses find it in the module).

    Raises:
        AttributeError: ``name`` is neither a subpackage nor a public name of ``spikeformer``.
    """
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # the import also binds it here
    raise AttributeError(
        f"module {__name__!r} has no attribute {name!r}; its public names are {', '.join(__all__)} and its "
        f"subpackages {', '.join(_SUBMODULES)}"
    )


def __dir__() -> list[str]:
    """The public names and subpackages (whether imported yet or not) and the module's dunder attributes."""
    return sorted({*(n for n in globals() if n.startswith("__")), *__all__, *_SUBMODULES})
