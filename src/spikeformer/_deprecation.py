"""Names and modules that moved keep working for one release, with a DeprecationWarning that says where they are.

A name: the old module gets a ``__getattr__`` that warns and forwards (PEP 562)::

    __getattr__ = moved_names(__name__, {"OldName": "spikeformer.new.module", "old": "spikeformer.new.module:new"})

A whole module: the old module warns when imported and stands for the new one in ``sys.modules``, so reading its
state, calling it and monkeypatching it act on the module the library uses::

    sys.modules[__name__] = moved_module(__name__, "spikeformer.new.module")

Bottom layer: imports nothing from spikeformer (the target module is imported on first access).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

__all__ = ["moved_module", "moved_names"]


def moved_names(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the names of ``module`` that now live elsewhere.

    Args:
        module: the old module's name (``__name__``).
        moved: old name -> ``"new.module"`` (same name there) or ``"new.module:new_name"``.

    Returns:
        The ``__getattr__``: a moved name warns (DeprecationWarning, pointing at the importer's line) and returns the
        object from its new home; any other name raises AttributeError as a module does.
    """

    def __getattr__(name: str) -> Any:
        target = moved.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        where, _, new_name = target.partition(":")
        new_name = new_name or name
        new = where if new_name == name else f"{where}.{new_name}"
        warnings.warn(f"{module}.{name} moved to {new}; import it from there", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(where), new_name)

    return __getattr__


def moved_module(module: str, new: str) -> ModuleType:
    """Warn that ``module`` moved to ``new`` (DeprecationWarning, pointing at the importer's line) and return ``new``.

    Args:
        module: the old module's name (``__name__``), called from its top level.
        new: the name of the module that replaces it.
    """
    warnings.warn(f"{module} moved to {new}; import it from there", DeprecationWarning, stacklevel=3)
    return importlib.import_module(new)
