"""Training: ``fit(TrainConfig)``, evaluation and resumable state."""

from spikeformer.runtime.evaluate import EvalResult, evaluate_model, load_evaluation_data, plot_confusion
from spikeformer.train.config import TrainConfig
from spikeformer.train.trainer import FitResult, fit, plot_curves, prepare_model

__all__ = [
    "EvalResult",
    "FitResult",
    "TrainConfig",
    "evaluate_model",
    "fit",
    "load_evaluation_data",
    "plot_confusion",
    "plot_curves",
    "prepare_model",
]
