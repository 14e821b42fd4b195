"""``GraphedForward``: replay a captured CUDA graph per input shape instead of launching every kernel from Python.

A Spikformer forward pass is a few hundred small kernels; at batch 1 launching them costs more than running them.
The first call with a new input shape runs the function twice on a side stream (warm-up: Triton compiles, cuBLAS picks
its algorithms), then captures one call into a ``torch.cuda.CUDAGraph``; later calls copy the input into the captured
input buffer and replay. Outputs live in the graphs' shared memory pool and are valid until the next call: callers
copy them out first (``Runner`` moves them to the host at once). At most ``max_graphs`` shapes are captured, further
shapes run eagerly; a function that cannot be captured (a host synchronisation inside, say) runs eagerly for that
shape from then on, with a warning. Calls are serialised by a lock (the graphs share buffers).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

import torch

__all__ = ["GraphedForward"]


class GraphedForward:
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], max_graphs: int = 8, warmup: int = 2) -> None:
        self.fn = fn
        self.max_graphs = max_graphs
        self.warmup = warmup
        self._graphs: dict[tuple, tuple[torch.Tensor, torch.cuda.CUDAGraph, torch.Tensor] | None] = {}
        self._pool = None
        self._lock = threading.Lock()

    @property
    def captured(self) -> int:
        """How many shapes replay a graph."""
        return sum(g is not None for g in self._graphs.values())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, x.device)
        with self._lock:
            if key not in self._graphs:
                if len(self._graphs) >= self.max_graphs:
                    return self.fn(x)
                self._graphs[key] = self._capture(x)
            entry = self._graphs[key]
            if entry is None:
                return self.fn(x)
            static_in, graph, static_out = entry
            static_in.copy_(x)
            graph.replay()
            return static_out

    def _capture(self, x: torch.Tensor):
        static_in = x.clone()
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        try:
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self.fn(static_in)
            torch.cuda.current_stream(x.device).wait_stream(side)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                static_out = self.fn(static_in)
        except RuntimeError as e:  # not capturable: run this shape eagerly
            torch.cuda.synchronize(x.device)
            warnings.warn(
                f"CUDA graph capture failed for input shape {tuple(x.shape)}; running eagerly: {e}", stacklevel=3
            )
            return None
        return static_in, graph, static_out
