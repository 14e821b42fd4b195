"""Store of model versions: what the model repository holds and whether each version loaded."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from spikeformer._deprecation import moved_names
from spikeformer.store._sql import upsert_insert
from spikeformer.store._types import utcnow
from spikeformer.store.tables import MODEL_VERSION_STATUSES, ModelVersion

__all__ = ["ModelVersionStore"]


def _check_status(status: str) -> None:
    if status not in MODEL_VERSION_STATUSES:
        raise ValueError(
            f"unknown model version status {status!r}: expected one of {', '.join(MODEL_VERSION_STATUSES)}"
        )


class ModelVersionStore:
    """SQL for `model_versions`; the caller's session owns the transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def upsert(
        self,
        name: str,
        version: str,
        path: str,
        sha256: str,
        status: str,
        error: str | None = None,
        required: bool = False,
    ) -> ModelVersion:
        """Insert or update the row of (`name`, `version`) in one statement (safe when replicas race).

        `loaded_at` is set to now when `status` is `ready` and kept otherwise.
        """
        _check_status(status)
        now = utcnow()
        values = {
            "name": name,
            "version": version,
            "path": path,
            "sha256": sha256,
            "status": status,
            "error": error,
            "required": required,
            "updated_at": now,
            "loaded_at": now if status == "ready" else None,
        }
        stmt = upsert_insert(self._session, ModelVersion).values(**values)
        changes = {k: stmt.excluded[k] for k in ("path", "sha256", "status", "error", "required", "updated_at")}
        if status == "ready":
            changes["loaded_at"] = stmt.excluded.loaded_at
        stmt = stmt.on_conflict_do_update(index_elements=["name", "version"], set_=changes)
        self._session.execute(stmt)
        row = self.get(name, version)
        assert row is not None
        return row

    def get(self, name: str, version: str) -> ModelVersion | None:
        """The row of (`name`, `version`), or None."""
        stmt = select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
        return self._session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()

    def list(self, name: str | None = None) -> Sequence[ModelVersion]:
        """Every version, or those of `name`, ordered by name then version."""
        stmt = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
        if name is not None:
            stmt = stmt.where(ModelVersion.name == name)
        return self._session.scalars(stmt.execution_options(populate_existing=True)).all()

    def set_status(self, name: str, version: str, status: str, error: str | None = None) -> bool:
        """Set the status (and error) of (`name`, `version`); False if there is no such row."""
        _check_status(status)
        now = utcnow()
        values: dict[str, object] = {"status": status, "error": error, "updated_at": now}
        if status == "ready":
            values["loaded_at"] = now
        stmt = (
            update(ModelVersion)
            .where(ModelVersion.name == name, ModelVersion.version == version)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return self._session.execute(stmt).rowcount == 1


# the SQL classes are stores ("repository" names the model folder); the old name warns
__getattr__ = moved_names(__name__, {"ModelVersionRepository": "spikeformer.store.model_versions:ModelVersionStore"})
