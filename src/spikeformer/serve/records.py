"""Inference records: buffered in memory, written to the database in the background.

Recording never blocks or breaks inference: a request only appends to a bounded buffer. A writer thread flushes
the buffer; while the database is down the records wait (readiness reports "degraded"); when the buffer is full the
oldest record is dropped, counted in ``spikeformer_records_dropped_total`` and logged — never lost silently.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from spikeformer.serve import metrics

__all__ = ["RecordBuffer"]

log = logging.getLogger("spikeformer.serve.records")


class RecordBuffer:
    """Bounded buffer + background writer.

    Args:
        write: ``write(records)`` persists a list of record dicts (raises on failure).
        capacity: most records held.
        interval_s: flush period.
    """

    def __init__(self, write: Callable[[list[dict[str, Any]]], None], capacity: int, interval_s: float) -> None:
        self._write = write
        self._buf: collections.deque[tuple[int, dict[str, Any]]] = collections.deque()
        self._seq = 0
        self.capacity = capacity
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.healthy = True
        self.last_error: str | None = None

    def __len__(self) -> int:
        return len(self._buf)

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            if len(self._buf) >= self.capacity:
                self._buf.popleft()
                self.dropped += 1
                metrics.RECORDS_DROPPED.inc()
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.error(
                        "record buffer full (%d): dropped %d inference records so far", self.capacity, self.dropped
                    )
            self._seq += 1
            self._buf.append((self._seq, record))
            metrics.RECORDS_BUFFERED.set(len(self._buf))

    def flush(self) -> int:
        """Write everything buffered; returns how many were written (0 on failure: they stay buffered)."""
        with self._lock:
            batch = list(self._buf)
        if not batch:
            return 0
        try:
            self._write([r for _, r in batch])
        except Exception as e:  # noqa: BLE001 - any database failure keeps the records for later
            metrics.DB_WRITE_FAILURES.inc()
            metrics.DB_UP.set(0)
            if self.healthy:
                log.error("database write failed, buffering inference records: %s", e)
            self.healthy, self.last_error = False, str(e).splitlines()[0][:300]
            return 0
        last = batch[-1][0]
        with self._lock:
            while self._buf and self._buf[0][0] <= last:  # written (or dropped meanwhile): remove
                self._buf.popleft()
            metrics.RECORDS_BUFFERED.set(len(self._buf))
        if not self.healthy:
            log.warning("database writes recovered; %d buffered records written", len(batch))
        self.healthy, self.last_error = True, None
        metrics.DB_UP.set(1)
        metrics.RECORDS_WRITTEN.inc(len(batch))
        return len(batch)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the writer and try to flush what is left until ``timeout``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        deadline = time.monotonic() + timeout
        while len(self._buf) and time.monotonic() < deadline:
            if not self.flush():
                time.sleep(0.1)
        if len(self._buf):
            log.error("shutting down with %d inference records not written", len(self._buf))
