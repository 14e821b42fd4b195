"""Models built by name (the timm pattern): ``@register_model`` entry points, ``create_model``, ``list_models``."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "model_defaults", "build_architecture"]

# name -> (builder class, default arguments)
_MODELS: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {}
# builder class name -> builder, so a checkpoint can be rebuilt from its saved config alone
_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, builder: Callable[..., nn.Module], **defaults: Any) -> None:
    """Register ``name`` as ``builder(**defaults, **overrides)``. Registering a name twice is an error."""
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = (builder, defaults)
    _ARCHITECTURES[builder.__name__] = builder


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def _lookup(name: str) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    if not isinstance(name, str) or name not in _MODELS:
        close = difflib.get_close_matches(str(name), _MODELS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} Registered models: {', '.join(list_models())}")
    return _MODELS[name]


def model_defaults(name: str) -> dict[str, Any]:
    """The arguments the registry entry ``name`` passes to its builder."""
    return dict(_lookup(name)[1])


def create_model(name: str, pretrained: bool = False, **overrides: Any) -> nn.Module:
    """Build a registered model; ``overrides`` replace the entry's arguments (e.g. ``img_size=28, in_chans=1``).

    Raises:
        ValueError: unknown name (close matches listed), unknown override, or invalid values.
    """
    builder, defaults = _lookup(name)
    if pretrained:
        raise ValueError(
            f"no pretrained weights are registered for {name!r}; load a trained checkpoint folder with "
            "spikeformer.load_pipeline(path) instead"
        )
    accepted = getattr(builder, "config_class", None)
    if accepted is not None:
        fields = set(accepted.__dataclass_fields__)
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"unknown argument(s) {unknown} for model {name!r}; accepted: {sorted(fields)}")
    model = builder(**{**defaults, **overrides})
    model.model_name = name
    return model


def build_architecture(architecture: str, config: dict[str, Any], name: str | None = None) -> nn.Module:
    """Rebuild a model from its class name and full saved config (what a checkpoint manifest holds)."""
    if architecture not in _ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(_ARCHITECTURES)}")
    builder = _ARCHITECTURES[architecture]
    cfg_class = getattr(builder, "config_class", None)
    if cfg_class is not None:
        config = cfg_class.from_dict(config).__dict__
    model = builder(**config)
    model.model_name = name or architecture
    return model
