"""Model families, built by name: ``create_model(name, **overrides)``; ``list_models()``."""

from spikeformer.models import spike_driven, spikformer, vit_relu  # noqa: F401  (registers the entries)
from spikeformer.models._base import SpikingTransformerConfig, SpikingVisionModel
from spikeformer.models._registry import (
    build_architecture,
    create_model,
    list_models,
    model_defaults,
    register_model,
)
from spikeformer.models.spike_driven import SpikeDrivenTransformer
from spikeformer.models.spikformer import Spikformer
from spikeformer.models.vit_relu import ReLUViT, ReLUViTConfig

__all__ = [
    "ReLUViT",
    "ReLUViTConfig",
    "SpikeDrivenTransformer",
    "Spikformer",
    "SpikingTransformerConfig",
    "SpikingVisionModel",
    "build_architecture",
    "create_model",
    "list_models",
    "model_defaults",
    "register_model",
]
