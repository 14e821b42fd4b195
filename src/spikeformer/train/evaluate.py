"""Deprecated: moved to :mod:`spikeformer.runtime.evaluate` (``spikeformer.train`` still exports the names)."""

from spikeformer._deprecation import moved_names

__getattr__ = moved_names(
    __name__,
    dict.fromkeys(
        ("EvalResult", "evaluate_model", "load_evaluation_data", "plot_confusion"), "spikeformer.runtime.evaluate"
    ),
)
