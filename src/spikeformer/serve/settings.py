"""Deprecated: the service settings are :class:`spikeformer.settings.Settings` now.

``ServiceSettings`` is kept for one release as a name for that class. The model repository has no fixed default any
more (the wheel ships no weights): it is the setting ``model_repository``, by default ``$SPIKEFORMER_HOME/models``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from spikeformer.settings import Settings, get_settings

# DEFAULT_MODEL_REPOSITORY is still importable, computed on access (module `__getattr__` below).
__all__ = ["ServiceSettings"]

warnings.warn(
    "spikeformer.serve.settings moved to spikeformer.settings (ServiceSettings is now Settings); import it from there",
    DeprecationWarning,
    stacklevel=2,
)

ServiceSettings = Settings


def __getattr__(name: str) -> Path:
    # DEFAULT_MODEL_REPOSITORY: the default the settings compute now (`<home>/models`), not a folder in the checkout.
    if name == "DEFAULT_MODEL_REPOSITORY":
        return get_settings().home / "models"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
