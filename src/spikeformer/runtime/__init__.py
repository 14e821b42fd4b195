"""The inference runtime: ``Runner`` is the one path every caller uses."""

from spikeformer.runtime.runner import PRECISIONS, Runner, RunStats

__all__ = ["PRECISIONS", "RunStats", "Runner"]
