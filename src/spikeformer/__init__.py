"""Spikeformer Neuromorphic Kit: build, train, convert, profile, compile and serve spiking transformers."""

from spikeformer.models import create_model, list_models

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models"]
