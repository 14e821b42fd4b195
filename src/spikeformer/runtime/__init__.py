"""The inference runtime: ``Runner`` is the one path every caller uses."""

from spikeformer.runtime.runner import AUTO_MIN_AGREEMENT, PRECISIONS, Runner, RunStats, select_precision

__all__ = ["AUTO_MIN_AGREEMENT", "PRECISIONS", "RunStats", "Runner", "select_precision"]
