"""Store of inference records: one row per request, for availability, latency and energy reports."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, case, cast, delete, func, insert, select, text
from sqlalchemy.orm import Session

from spikeformer._deprecation import moved_names
from spikeformer.store._sql import dialect_name, upsert_insert
from spikeformer.store._types import utcnow
from spikeformer.store.tables import InferenceDailyAggregate, InferenceRecord

__all__ = ["LATENCY_BUCKETS_MS", "ROLLUP_SETTLE", "InferenceRecordStore"]

# Upper bounds (ms) of the latency histogram kept in the daily aggregates (the service's latency buckets); one more
# bucket counts the latencies above the last bound.
LATENCY_BUCKETS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)
# A day's aggregates computed this long after the day ended are not recomputed before the day is sealed.
ROLLUP_SETTLE = timedelta(hours=1)

_COLUMNS = frozenset(InferenceRecord.__table__.columns.keys())


def _count_ok() -> ColumnElement[int]:
    return func.coalesce(func.sum(case((InferenceRecord.status == "ok", 1), else_=0)), 0)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value.isoformat()}")
    return value


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _utc_day(session: Session) -> ColumnElement[Any]:
    """The UTC date of `created_at`, as a column expression of the session's backend."""
    if dialect_name(session) == "postgresql":
        return cast(func.timezone("UTC", InferenceRecord.created_at), Date)
    return func.date(InferenceRecord.created_at)  # stored as UTC text, so the text date is the UTC date


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _percentile(hist: list[int], count: int, fraction: float, largest: float | None) -> float | None:
    """Nearest-rank percentile from histogram counts: the upper bound of the bucket holding the rank."""
    if count <= 0:
        return None
    rank = max(1, math.ceil(fraction * count))
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return LATENCY_BUCKETS_MS[i] if i < len(LATENCY_BUCKETS_MS) else largest
    return largest


class InferenceRecordStore:
    """SQL for `inference_records`; the caller's session owns the transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add_many(self, records: Sequence[dict[str, Any]], skip_existing: bool = False) -> list[str]:
        """Insert `records` in one batch and return their ids.

        Args:
            records: one dict per request, keyed by column name; `id` (a uuid4) and `created_at` (now, UTC) are
                filled in when absent.
            skip_existing: a record whose `id` is already stored is left as it is (INSERT ... ON CONFLICT (id) DO
                NOTHING) instead of failing the batch: the service's crash spool may present a record twice.
        """
        if not records:
            return []
        now = utcnow()
        rows = []
        for record in records:
            unknown = set(record) - _COLUMNS
            if unknown:
                raise ValueError(f"unknown inference record fields {sorted(unknown)}: columns are {sorted(_COLUMNS)}")
            row = {column: None for column in _COLUMNS} | dict(record)
            row["id"] = row["id"] or str(uuid.uuid4())
            row["created_at"] = row["created_at"] or now
            rows.append(row)
        if skip_existing:
            stmt = upsert_insert(self._session, InferenceRecord).on_conflict_do_nothing(index_elements=["id"])
            self._session.execute(stmt, rows)
        else:
            self._session.execute(insert(InferenceRecord), rows)
        return [row["id"] for row in rows]

    def get(self, record_id: str) -> InferenceRecord | None:
        """The record with `record_id`, or None."""
        return self._session.get(InferenceRecord, record_id)

    def _filters(
        self, since: datetime | None, until: datetime | None, filters: dict[str, Any]
    ) -> list[ColumnElement[bool]]:
        unknown = set(filters) - _COLUMNS
        if unknown:
            raise ValueError(f"unknown inference record filters {sorted(unknown)}: columns are {sorted(_COLUMNS)}")
        clauses: list[ColumnElement[bool]] = [
            InferenceRecord.__table__.c[name] == value for name, value in filters.items()
        ]
        if since is not None:
            clauses.append(InferenceRecord.created_at >= _aware(since, "since"))
        if until is not None:
            clauses.append(InferenceRecord.created_at < _aware(until, "until"))
        return clauses

    def count(self, since: datetime | None = None, until: datetime | None = None, **filters: Any) -> int:
        """How many records match every `column=value` filter, created in [`since`, `until`) when given."""
        stmt = select(func.count()).select_from(InferenceRecord).where(*self._filters(since, until, filters))
        return int(self._session.scalar(stmt) or 0)

    def list_recent(self, limit: int = 100, model: str | None = None) -> Sequence[InferenceRecord]:
        """The newest `limit` records (of `model` when given), newest first."""
        stmt = select(InferenceRecord).order_by(InferenceRecord.created_at.desc()).limit(limit)
        if model is not None:
            stmt = stmt.where(InferenceRecord.model == model)
        return self._session.scalars(stmt).all()

    def window_stats(self, start: datetime, end: datetime, model: str | None = None) -> dict[str, Any]:
        """Counts and latency percentiles of the records created in [`start`, `end`).

        Returns:
            `total`, `ok`, `errors` (status other than `ok`), and `p50_latency_ms` / `p99_latency_ms` over the `ok`
            records (nearest-rank: the smallest latency with at least p% of the values at or below it; None when
            there is no `ok` record). The percentiles are computed in the database (ORDER BY ... OFFSET), the same
            way on both backends, without loading the rows.
        """
        filters = {} if model is None else {"model": model}
        where = self._filters(start, end, filters)
        stmt = select(func.count(), _count_ok()).where(*where)
        total, ok = self._session.execute(stmt.select_from(InferenceRecord)).one()
        stats: dict[str, Any] = {"total": int(total), "ok": int(ok), "errors": int(total) - int(ok)}
        for name, fraction in (("p50_latency_ms", 0.50), ("p99_latency_ms", 0.99)):
            stats[name] = None
            if ok:
                rank = max(1, math.ceil(fraction * ok))
                stmt = (
                    select(InferenceRecord.latency_ms)
                    .where(*where, InferenceRecord.status == "ok")
                    .order_by(InferenceRecord.latency_ms)
                    .offset(rank - 1)
                    .limit(1)
                )
                stats[name] = self._session.scalar(stmt)
        return stats

    def daily_availability(self, days: int, now: datetime | None = None) -> list[dict[str, Any]]:
        """Requests and successful (`ok`) requests per UTC day over the last `days` days, oldest first.

        Today (the UTC day of `now`) is the last entry; days without requests are listed with zeros. Days up to the
        latest one with daily aggregates are read from the aggregates (which outlive the raw records); the days
        after it (today, and yesterday until it is rolled up) from the raw records.

        Returns:
            `[{"date": datetime.date, "total": int, "ok": int}, ...]`, `days` entries.
        """
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        now = _aware(now, "now") if now is not None else utcnow()
        today = now.astimezone(UTC).date()
        first = today - timedelta(days=days - 1)
        agg = InferenceDailyAggregate
        ok_requests = func.coalesce(func.sum(case((agg.status == "ok", agg.requests), else_=0)), 0)
        stmt = (
            select(agg.day, func.sum(agg.requests), ok_requests)
            .where(agg.day >= first, agg.day <= today)
            .group_by(agg.day)
        )
        counts: dict[date, tuple[int, int]] = {}
        for value, total, ok in self._session.execute(stmt):
            counts[_as_date(value)] = (int(total), int(ok))
        raw_from = max(max(counts, default=first - timedelta(days=1)) + timedelta(days=1), first)
        if raw_from <= today:
            day = _utc_day(self._session)
            stmt = (
                select(day.label("day"), func.count(), _count_ok())
                .where(
                    InferenceRecord.created_at >= _day_start(raw_from),
                    InferenceRecord.created_at < _day_start(today + timedelta(days=1)),
                )
                .group_by(day)
            )
            for value, total, ok in self._session.execute(stmt):
                counts[_as_date(value)] = (int(total), int(ok))
        out = []
        for offset in range(days):
            current = first + timedelta(days=offset)
            total, ok = counts.get(current, (0, 0))
            out.append({"date": current, "total": total, "ok": ok})
        return out

    # -- daily aggregates and retention ------------------------------------------------------------------------------

    def is_sealed(self, day: date) -> bool:
        """Whether the raw records of `day` have started to be deleted (its aggregates are final)."""
        agg = InferenceDailyAggregate
        stmt = select(func.count()).select_from(agg).where(agg.day == day, agg.sealed.is_(True))
        return bool(self._session.scalar(stmt))

    def rollup_day(self, day: date, *, seal: bool = False, now: datetime | None = None) -> int:
        """Replace the daily aggregates of the UTC `day` with the sums of its raw records.

        A sealed day is left as it is (its raw records may be partly deleted already).

        Args:
            day: the UTC day.
            seal: mark the aggregates final (done just before the day's raw records are deleted).
            now: the time recorded as the aggregates' `updated_at` (default: now).

        Returns:
            The number of raw records summed (0 for a sealed day).
        """
        if self.is_sealed(day):
            return 0
        r = InferenceRecord
        latency = func.coalesce(r.latency_ms, 0.0)
        cumulative = [func.sum(case((latency <= bound, 1), else_=0)) for bound in LATENCY_BUCKETS_MS]
        stmt = (
            select(r.model, r.status, func.count(), func.sum(latency), func.max(latency), *cumulative)
            .where(r.created_at >= _day_start(day), r.created_at < _day_start(day + timedelta(days=1)))
            .group_by(r.model, r.status)
        )
        rows = []
        now = _aware(now, "now") if now is not None else utcnow()
        for model, status, count, total_ms, max_ms, *cum in self._session.execute(stmt):
            cum = [int(c or 0) for c in cum] + [int(count)]
            hist = [cum[0]] + [cum[i] - cum[i - 1] for i in range(1, len(cum))]
            rows.append(
                {
                    "day": day,
                    "model": model,
                    "status": status,
                    "requests": int(count),
                    "latency_ms_sum": float(total_ms or 0.0),
                    "latency_ms_max": None if max_ms is None else float(max_ms),
                    "latency_hist": json.dumps(hist),
                    "sealed": seal,
                    "updated_at": now,
                }
            )
        self._session.execute(delete(InferenceDailyAggregate).where(InferenceDailyAggregate.day == day))
        if rows:
            self._session.execute(insert(InferenceDailyAggregate), rows)
        return sum(row["requests"] for row in rows)

    def rollup_pending(self, now: datetime | None = None, not_before: date | None = None) -> list[date]:
        """Roll up the completed UTC days not yet (or last) rolled up, up to yesterday; returns the days rolled up.

        The latest unsealed day with aggregates is rolled up again unless that was done `ROLLUP_SETTLE` after its
        end (records written late, e.g. after a database outage), then every day after it; without one, from the day
        of the oldest raw record after the sealed days. Records written later still are counted when the day is
        sealed (`delete_expired` rolls it up from its raw records once more).

        Args:
            now: the current time (default: now).
            not_before: no day before this one is rolled up (the retention's first kept day: older days are
                sealed by `delete_expired`, never here).
        """
        now = _aware(now, "now") if now is not None else utcnow()
        yesterday = now.astimezone(UTC).date() - timedelta(days=1)
        agg = InferenceDailyAggregate
        latest = self._session.scalar(select(func.max(agg.day)).where(agg.sealed.is_(False)))
        if latest is not None:
            first = _as_date(latest)
            rolled_at = self._session.scalar(select(func.max(agg.updated_at)).where(agg.day == first))
            if rolled_at is not None and rolled_at >= _day_start(first + timedelta(days=1)) + ROLLUP_SETTLE:
                first += timedelta(days=1)  # rolled up well after it ended: final enough until it is sealed
        else:
            since = self.raw_complete_since()
            stmt = select(func.min(InferenceRecord.created_at))
            if since is not None:
                stmt = stmt.where(InferenceRecord.created_at >= since)
            oldest = self._session.scalar(stmt)
            if oldest is None:
                return []
            first = oldest.astimezone(UTC).date()
        if not_before is not None:
            first = max(first, not_before)
        done = []
        day = first
        while day <= yesterday:
            if not self.is_sealed(day):
                self.rollup_day(day, now=now)
                done.append(day)
            day += timedelta(days=1)
        return done

    def delete_expired(self, keep_from: date, batch_size: int) -> int:
        """Delete at most `batch_size` raw records of the oldest UTC day before `keep_from`, its aggregates first.

        The day's aggregates are rolled up from its complete raw records and sealed in the same transaction as the
        first deletion, so no record goes uncounted. Whole UTC days expire, oldest first.

        Returns:
            The number of records deleted; 0 when no record is older than `keep_from`.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        r = InferenceRecord
        oldest = self._session.scalar(select(func.min(r.created_at)).where(r.created_at < _day_start(keep_from)))
        if oldest is None:
            return 0
        day = oldest.astimezone(UTC).date()
        if not self.is_sealed(day):
            self.rollup_day(day, seal=True)
        ids = (
            select(r.id)
            .where(r.created_at >= _day_start(day), r.created_at < _day_start(day + timedelta(days=1)))
            .order_by(r.created_at)
            .limit(batch_size)
            .scalar_subquery()
        )
        result = self._session.execute(delete(r).where(r.id.in_(ids)))
        return int(result.rowcount or 0)

    def database_bytes(self) -> int:
        """Bytes the whole database uses: `pg_database_size` on PostgreSQL, pages times page size on SQLite."""
        if dialect_name(self._session) == "postgresql":
            return int(self._session.scalar(select(func.pg_database_size(func.current_database()))) or 0)
        pages = self._session.execute(text("PRAGMA page_count")).scalar() or 0
        size = self._session.execute(text("PRAGMA page_size")).scalar() or 0
        return int(pages) * int(size)

    def oldest_created_at(self) -> datetime | None:
        """When the oldest raw record was created, or None without records."""
        return self._session.scalar(select(func.min(InferenceRecord.created_at)))

    def raw_complete_since(self) -> datetime | None:
        """From when on every raw record is still there: midnight after the latest sealed day (None: all are)."""
        agg = InferenceDailyAggregate
        latest = self._session.scalar(select(func.max(agg.day)).where(agg.sealed.is_(True)))
        return None if latest is None else _day_start(_as_date(latest) + timedelta(days=1))

    def daily_stats(self, first: date, last: date, model: str | None = None) -> dict[str, Any]:
        """`window_stats` of the UTC days `first`..`last` (inclusive) from the daily aggregates.

        Percentiles are the upper bound of the histogram bucket holding the rank (`LATENCY_BUCKETS_MS`; the
        largest latency above the last bound). `by_status` counts the requests per status.
        """
        agg = InferenceDailyAggregate
        stmt = select(agg).where(agg.day >= first, agg.day <= last)
        if model is not None:
            stmt = stmt.where(agg.model == model)
        by_status: dict[str, int] = {}
        hist = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        largest: float | None = None
        for row in self._session.scalars(stmt):
            by_status[row.status] = by_status.get(row.status, 0) + int(row.requests)
            if row.status == "ok":
                for i, n in enumerate(json.loads(row.latency_hist)):
                    hist[i] += int(n)
                if row.latency_ms_max is not None:
                    largest = max(largest or 0.0, row.latency_ms_max)
        total = sum(by_status.values())
        ok = by_status.get("ok", 0)
        return {
            "total": total,
            "ok": ok,
            "errors": total - ok,
            "p50_latency_ms": _percentile(hist, ok, 0.50, largest),
            "p99_latency_ms": _percentile(hist, ok, 0.99, largest),
            "by_status": by_status,
        }


# the SQL classes are stores ("repository" names the model folder); the old name warns
__getattr__ = moved_names(
    __name__, {"InferenceRecordRepository": "spikeformer.store.inference_records:InferenceRecordStore"}
)
