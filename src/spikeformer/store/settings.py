"""Store of service-wide settings (maintenance mode and the like), stored as JSON text."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from spikeformer._deprecation import moved_names
from spikeformer.store._sql import upsert_insert
from spikeformer.store._types import utcnow
from spikeformer.store.tables import Setting

__all__ = ["SettingsStore"]


class SettingsStore:
    """SQL for `settings`; the caller's session owns the transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, key: str, default: Any = None) -> Any:
        """The value of `key` parsed from JSON, or `default` when the key was never set."""
        value = self._session.scalar(select(Setting.value).where(Setting.key == key))
        return default if value is None else json.loads(value)

    def set(self, key: str, value: Any) -> None:
        """Store `value` (anything `json.dumps` accepts) under `key`, replacing any previous value."""
        text = json.dumps(value)
        stmt = upsert_insert(self._session, Setting).values(key=key, value=text, updated_at=utcnow())
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"], set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at}
        )
        self._session.execute(stmt)

    def all(self) -> dict[str, Any]:
        """Every setting, parsed."""
        return {key: json.loads(value) for key, value in self._session.execute(select(Setting.key, Setting.value))}


# the SQL classes are stores ("repository" names the model folder); the old name warns
__getattr__ = moved_names(__name__, {"SettingsRepository": "spikeformer.store.settings:SettingsStore"})
