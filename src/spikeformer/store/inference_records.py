"""Store of inference records: one row per request, for availability, latency and energy reports."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, case, cast, func, insert, select
from sqlalchemy.orm import Session

from spikeformer._deprecation import moved_names
from spikeformer.store._sql import dialect_name
from spikeformer.store._types import utcnow
from spikeformer.store.tables import InferenceRecord

__all__ = ["InferenceRecordStore"]

_COLUMNS = frozenset(InferenceRecord.__table__.columns.keys())


def _count_ok() -> ColumnElement[int]:
    return func.coalesce(func.sum(case((InferenceRecord.status == "ok", 1), else_=0)), 0)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value.isoformat()}")
    return value


class InferenceRecordStore:
    """SQL for `inference_records`; the caller's session owns the transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add_many(self, records: Sequence[dict[str, Any]]) -> list[str]:
        """Insert `records` in one batch and return their ids.

        Args:
            records: one dict per request, keyed by column name; `id` (a uuid4) and `created_at` (now, UTC) are
                filled in when absent.
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

        Today (the UTC day of `now`) is the last entry; days without requests are listed with zeros.

        Returns:
            `[{"date": datetime.date, "total": int, "ok": int}, ...]`, `days` entries.
        """
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        now = _aware(now, "now") if now is not None else utcnow()
        today = now.astimezone(UTC).date()
        first = today - timedelta(days=days - 1)
        start = datetime.combine(first, time(0), tzinfo=UTC)
        end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=UTC)
        if dialect_name(self._session) == "postgresql":
            day = cast(func.timezone("UTC", InferenceRecord.created_at), Date)
        else:
            day = func.date(InferenceRecord.created_at)  # stored as UTC text, so the text date is the UTC date
        stmt = (
            select(day.label("day"), func.count(), _count_ok())
            .where(InferenceRecord.created_at >= start, InferenceRecord.created_at < end)
            .group_by(day)
        )
        counts: dict[date, tuple[int, int]] = {}
        for value, total, ok in self._session.execute(stmt):
            key = value if isinstance(value, date) else date.fromisoformat(value)
            counts[key] = (int(total), int(ok))
        out = []
        for offset in range(days):
            current = first + timedelta(days=offset)
            total, ok = counts.get(current, (0, 0))
            out.append({"date": current, "total": total, "ok": ok})
        return out


# the SQL classes are stores ("repository" names the model folder); the old name warns
__getattr__ = moved_names(
    __name__, {"InferenceRecordRepository": "spikeformer.store.inference_records:InferenceRecordStore"}
)
