"""Inference records: journaled to a local spool, buffered in memory, written to the database in the background.

Recording never blocks or breaks inference. A request appends its record (its id already assigned) to this
process's spool file with one ``write()`` and to a bounded in-memory buffer, both before the answer is sent; a
writer thread flushes the buffer to the database and then releases the spool segments whose records are all
stored. A ``write()`` is in the kernel's page cache as soon as it returns, so a crash of the process (SIGKILL, the
OOM killer) loses nothing: the next start replays the spool files that no live process holds, inserting each record
only if its id is not stored yet. The writer thread fsyncs the spool once per flush interval, so a crash of the
machine (power loss, kernel panic) can still lose the records answered since the last fsync (at most about one
flush interval) that were not yet committed to the database.

While the database is down the records wait in both places (readiness reports "degraded"). When the memory buffer
is full its oldest record is dropped, counted in ``spikeformer_records_dropped_total`` and logged. When the spool is
at its size cap (or cannot be written) the request is still answered and its record still buffered, but without a
crash copy: counted in ``spikeformer_records_not_spooled_total`` and logged. Nothing is lost silently.
"""

from __future__ import annotations

import collections
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spikeformer.serve import metrics

__all__ = ["RecordBuffer", "RecordSpool", "spool_key"]

log = logging.getLogger("spikeformer.serve.records")

_REPLAY_BATCH = 500


def spool_key(database_url: str) -> str:
    """The name under which the spool of the records bound for ``database_url`` is kept (a hash, no secrets)."""
    return hashlib.sha256(database_url.encode()).hexdigest()[:16]


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"an inference record holds a {type(value).__name__}, which the spool cannot store")


def _decode(line: bytes) -> dict[str, Any]:
    record = json.loads(line)
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise ValueError("not an inference record")
    if isinstance(record.get("created_at"), str):
        record["created_at"] = dt.datetime.fromisoformat(record["created_at"])
    return record


@dataclass
class _Segment:
    path: Path
    size: int = 0
    max_seq: int = 0
    synced: bool = False


class RecordSpool:
    """Append-only crash journal of inference records: one JSON line per record, in segment files of one process.

    Files are ``<folder>/records-<key>-<owner>.lock`` (held with ``flock`` while the process lives) and
    ``<folder>/records-<key>-<owner>-<n>.jsonl``; ``key`` names the database the records belong to, so a spool is only
    ever replayed into its own database, and ``owner`` is unique per process (the pid and a random token: a
    restarted container's pid 1 is a new owner).

    Not thread-safe on its own: :class:`RecordBuffer` calls :meth:`append` and :meth:`release` under its lock.

    Args:
        folder: the spool folder (created).
        key: the database's :func:`spool_key`.
        max_bytes: most bytes this process keeps in its spool; records beyond it are not spooled.
    """

    def __init__(self, folder: Path, key: str, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.key = key
        self.max_bytes = max_bytes
        self.segment_bytes = min(4 << 20, max(64 << 10, max_bytes // 16))
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._current: _Segment | None = None
        self._closed: list[_Segment] = []
        self._n = 0
        self.available = False
        self.not_spooled = 0

    # ------------------------------------------------------------------ this process's spool
    def _prefix(self, owner: str) -> str:
        return f"records-{self.key}-{owner}"

    @property
    def bytes(self) -> int:
        """Bytes of records this process holds in its spool now."""
        return sum(s.size for s in self._closed) + (self._current.size if self._current else 0)

    def open(self) -> bool:
        """Create the folder, take this process's lock and open its first segment; False (logged) when it cannot."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / f"{self._prefix(self.owner)}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._lock_fd = fd
            self._open_segment()
        except OSError as e:
            log.error(
                "inference record spool %s unusable, records are not protected against a crash: %s", self.folder, e
            )
            return False
        self.available = True
        return True

    def _open_segment(self) -> None:
        self._n += 1
        path = self.folder / f"{self._prefix(self.owner)}-{self._n:06d}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._current = _Segment(path)

    def append(self, seq: int, record: dict[str, Any]) -> str | None:
        """Journal one record with a single ``write()``; returns None, or why it was not spooled ("full", "error")."""
        if not self.available or self._fd is None or self._current is None:
            return "error"
        line = json.dumps(record, default=_json_default, separators=(",", ":")).encode() + b"\n"
        if self.bytes + len(line) > self.max_bytes:
            return "full"
        try:
            if self._current.size >= self.segment_bytes:
                os.close(self._fd)
                self._closed.append(self._current)
                self._fd, self._current = None, None
                self._open_segment()
            written = os.write(self._fd, line)  # type: ignore[arg-type]
        except OSError as e:
            log.error("could not write the inference record spool: %s", e)
            return "error"
        assert self._current is not None
        self._current.size += written
        self._current.max_seq = seq
        self._current.synced = False
        return None if written == len(line) else "error"

    def release(self, last_seq: int) -> None:
        """Drop the segments whose records (sequence numbers up to ``last_seq``) are all in the database."""
        keep = []
        for seg in self._closed:
            if seg.max_seq <= last_seq:
                seg.path.unlink(missing_ok=True)
            else:
                keep.append(seg)
        self._closed = keep
        cur = self._current
        if cur is not None and self._fd is not None and cur.size and cur.max_seq <= last_seq:
            os.ftruncate(self._fd, 0)  # O_APPEND: the next write lands at offset 0
            cur.size, cur.max_seq = 0, 0
        metrics.RECORD_SPOOL_BYTES.set(self.bytes)

    def sync_targets(self) -> tuple[int | None, list[Path]]:
        """A duplicate of the current segment's descriptor and the closed segments not fsynced yet (for :meth:`sync`).

        Called under the buffer's lock; :meth:`sync` then runs outside it.
        """
        fd = os.dup(self._fd) if self._fd is not None and self._current and not self._current.synced else None
        if self._current is not None:
            self._current.synced = True
        paths = [s.path for s in self._closed if not s.synced]
        for s in self._closed:
            s.synced = True
        return fd, paths

    @staticmethod
    def sync(fd: int | None, paths: list[Path]) -> None:
        """fsync what :meth:`sync_targets` returned (outside the buffer's lock: it may take milliseconds)."""
        try:
            if fd is not None:
                os.fsync(fd)
            for path in paths:
                try:
                    pfd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue  # released meanwhile
                try:
                    os.fsync(pfd)
                finally:
                    os.close(pfd)
        except OSError as e:
            log.warning("could not fsync the inference record spool: %s", e)
        finally:
            if fd is not None:
                os.close(fd)

    def close(self, remove: bool) -> None:
        """Close the spool; ``remove`` deletes its files (all its records are stored), else they stay for replay."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        segments = [*self._closed, *([self._current] if self._current else [])]
        if remove or not any(seg.size for seg in segments):
            for seg in segments:
                seg.path.unlink(missing_ok=True)
            (self.folder / f"{self._prefix(self.owner)}.lock").unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._closed, self._current, self.available = [], None, False

    # ------------------------------------------------------------------ other processes' spools
    def orphans(self) -> Iterator[tuple[str, list[Path], int | None]]:
        """Spools of this database left by processes that are gone: ``(owner, segment paths, lock fd held now)``.

        The dead owner's lock is taken (non-blocking) and held until :meth:`forget_orphan`, so two processes starting
        together never replay the same files at once; a live process's files are skipped.
        """
        if not self.folder.is_dir():
            return
        prefix = f"records-{self.key}-"
        owners: dict[str, list[Path]] = collections.defaultdict(list)
        for path in sorted(self.folder.glob(f"{prefix}*")):
            rest = path.name[len(prefix) :]
            if path.suffix == ".lock":
                owners.setdefault(rest[: -len(".lock")], [])
            elif path.suffix == ".jsonl":
                owners[rest.rsplit("-", 1)[0]].append(path)
        for owner, paths in owners.items():
            if owner == self.owner:
                continue
            lock_path = self.folder / f"{prefix}{owner}.lock"
            fd: int | None = None
            if lock_path.exists():
                try:
                    fd = os.open(lock_path, os.O_WRONLY)
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # held by a live process (or gone meanwhile)
                    if fd is not None:
                        os.close(fd)
                    continue
            yield owner, paths, fd

    def forget_orphan(self, owner: str, paths: list[Path], fd: int | None, replayed: bool) -> None:
        """Delete a replayed orphan's files (``replayed``) and release its lock."""
        if replayed:
            for path in paths:
                path.unlink(missing_ok=True)
            (self.folder / f"records-{self.key}-{owner}.lock").unlink(missing_ok=True)
        if fd is not None:
            os.close(fd)

    @staticmethod
    def read(paths: list[Path]) -> tuple[list[dict[str, Any]], int]:
        """The records in ``paths`` and how many lines were unreadable (a line torn by a machine crash)."""
        records, bad = [], 0
        for path in paths:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            for line in data.splitlines():
                if not line.strip():
                    continue
                try:
                    records.append(_decode(line))
                except (ValueError, TypeError):
                    bad += 1
        return records, bad


class RecordBuffer:
    """Bounded buffer + background writer, with an optional crash spool.

    Args:
        write: ``write(records)`` persists a list of record dicts, skipping any whose id is already stored (the
            spool's replay and a retried batch may present a record again); raises on failure.
        capacity: most records held in memory.
        interval_s: flush period.
        spool: the crash journal (:class:`RecordSpool`, opened by :meth:`start`); None: records live in memory only.
    """

    def __init__(
        self,
        write: Callable[[list[dict[str, Any]]], None],
        capacity: int,
        interval_s: float,
        spool: RecordSpool | None = None,
    ) -> None:
        self._write = write
        self._buf: collections.deque[tuple[int, dict[str, Any]]] = collections.deque()
        self._seq = 0
        self.capacity = capacity
        self.interval_s = interval_s
        self.spool = spool
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._orphans_pending = False
        self.dropped = 0
        self.not_spooled = 0
        self.replayed = 0
        self.healthy = True
        self.last_error: str | None = None

    def __len__(self) -> int:
        return len(self._buf)

    def add(self, record: dict[str, Any]) -> None:
        """Journal ``record`` in the spool (one ``write()``) and buffer it for the database; never raises."""
        with self._lock:
            self._seq += 1
            if self.spool is not None:
                reason = self.spool.append(self._seq, record)
                if reason is not None:
                    self._count_not_spooled(reason)
            if len(self._buf) >= self.capacity:
                self._buf.popleft()
                self.dropped += 1
                metrics.RECORDS_DROPPED.inc()
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.error(
                        "record buffer full (%d): dropped %d inference records so far", self.capacity, self.dropped
                    )
            self._buf.append((self._seq, record))
            metrics.RECORDS_BUFFERED.set(len(self._buf))
            if self.spool is not None:
                metrics.RECORD_SPOOL_BYTES.set(self.spool.bytes)

    def _count_not_spooled(self, reason: str) -> None:
        self.not_spooled += 1
        metrics.RECORDS_NOT_SPOOLED.labels(reason).inc()
        if self.not_spooled == 1 or self.not_spooled % 1000 == 0:
            why = (
                f"the spool is at its cap of {self.spool.max_bytes} bytes"
                if reason == "full" and self.spool is not None
                else "the spool cannot be written"
            )
            log.error(
                "%s: %d inference records so far are held in memory only and would be lost if the process crashed",
                why,
                self.not_spooled,
            )

    def flush(self) -> int:
        """Write everything buffered; returns how many were written (0 on failure: they stay buffered)."""
        with self._lock:
            batch = list(self._buf)
            targets = self.spool.sync_targets() if self.spool is not None and self.spool.available else None
        if targets is not None:
            RecordSpool.sync(*targets)
        if not batch:
            return 0
        try:
            self._write([r for _, r in batch])
        except Exception as e:  # noqa: BLE001 - any database failure keeps the records for later
            self._failed(e)
            return 0
        last = batch[-1][0]
        with self._lock:
            while self._buf and self._buf[0][0] <= last:  # written (or dropped meanwhile): remove
                self._buf.popleft()
            metrics.RECORDS_BUFFERED.set(len(self._buf))
            if self.spool is not None and self.spool.available:
                try:
                    self.spool.release(last)
                except OSError as e:  # the records are stored; their spool copy is replayed idempotently
                    log.warning("could not truncate the inference record spool: %s", e)
        self._recovered(len(batch))
        metrics.RECORDS_WRITTEN.inc(len(batch))
        return len(batch)

    def _failed(self, e: Exception) -> None:
        metrics.DB_WRITE_FAILURES.inc()
        metrics.DB_UP.set(0)
        if self.healthy:
            log.error("database write failed, buffering inference records: %s", e)
        self.healthy, self.last_error = False, str(e).splitlines()[0][:300]

    def _recovered(self, n: int) -> None:
        if not self.healthy:
            log.warning("database writes recovered; %d buffered records written", n)
        self.healthy, self.last_error = True, None
        metrics.DB_UP.set(1)

    def replay(self) -> int:
        """Write the records of spools left by processes that died, once each; returns how many were read back.

        A spool whose records cannot be written now (database down) stays on disk and is retried by the writer.
        """
        if self.spool is None or not self.spool.available:
            return 0
        total = 0
        self._orphans_pending = False
        for owner, paths, fd in self.spool.orphans():
            done = False
            try:
                records, bad = RecordSpool.read(paths)
                if bad:
                    log.warning("skipped %d unreadable lines in the spool of %s (torn by a crash)", bad, owner)
                for i in range(0, len(records), _REPLAY_BATCH):
                    self._write(records[i : i + _REPLAY_BATCH])
                done = True
            except Exception as e:  # noqa: BLE001 - the files stay for the next attempt
                self._failed(e)
                self._orphans_pending = True
                log.error("could not replay the inference record spool of %s yet: %s", owner, e)
            finally:
                self.spool.forget_orphan(owner, paths, fd, done)
            if not done:
                break  # the database is down: the other spools wait for the writer's next attempt too
            total += len(records)
            metrics.RECORDS_REPLAYED.inc(len(records))
            if records:
                log.warning("replayed %d inference records from the spool of %s", len(records), owner)
        self.replayed += total
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self._orphans_pending:
                self.replay()
            self.flush()

    def start(self) -> None:
        """Open the spool, replay the spools of processes that died (before the first answer), start the writer."""
        if self.spool is not None and not self.spool.available:
            self.spool.open()
        self.replay()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the writer and try to flush what is left until ``timeout``; what is not written stays in the spool."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        deadline = time.monotonic() + timeout
        while len(self._buf) and time.monotonic() < deadline:
            if not self.flush():
                time.sleep(0.1)
        left = len(self._buf)
        if self.spool is not None and self.spool.available:
            self.spool.close(remove=not left)
        if left:
            where = f"; kept in the spool {self.spool.folder} for the next start" if self.spool is not None else ""
            log.error("shutting down with %d inference records not written%s", left, where)
