"""Spikeformer Neuromorphic Kit: build, train, convert, profile, compile and serve spiking transformers."""

__version__ = "0.1.0"

from spikeformer.models import create_model, list_models  # noqa: E402
from spikeformer.pipeline import load_pipeline  # noqa: E402

__all__ = ["__version__", "create_model", "list_models", "load_pipeline"]
