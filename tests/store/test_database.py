"""Engine, sessions, migrations and schema checks on SQLite and a real PostgreSQL server."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, make_url
from sqlalchemy.exc import StatementError

from spikeformer.store import (
    Base,
    Database,
    DatabaseUnavailableError,
    InferenceRecordStore,
    JobStore,
    SchemaOutOfDateError,
    SettingsStore,
    StoreError,
    default_database_url,
)

TABLES = {"model_versions", "inference_records", "api_keys", "jobs", "settings"}


def test_default_url_prefers_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKEFORMER_DATABASE_URL", "postgresql://u@db/spikeformer")
    assert default_database_url() == "postgresql://u@db/spikeformer"


def test_default_url_is_a_sqlite_file_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("SPIKEFORMER_DATABASE_URL", raising=False)
    monkeypatch.setenv("SPIKEFORMER_HOME", str(tmp_path / "home"))
    url = default_database_url()
    assert url == f"sqlite:///{tmp_path / 'home' / 'spikeformer.db'}"
    assert (tmp_path / "home").is_dir()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_postgresql_urls_use_psycopg3(scheme):
    database = Database(f"{scheme}://user:pw@db.example:5432/spikeformer")
    assert make_url(database.url).drivername == "postgresql+psycopg"
    assert not database.is_sqlite and database.is_postgresql
    assert "pw" not in database.safe_url and "***" in database.safe_url
    database.dispose()


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(sqlite_url):
    database = Database(sqlite_url)
    with database.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.dispose()


def test_migrations_create_every_table(fresh_url):
    database = Database(fresh_url)
    assert database.current_revision() is None
    database.upgrade()
    assert TABLES <= set(inspect(database.engine).get_table_names())
    assert database.current_revision() == database.head_revision()
    database.check_schema()
    database.dispose()


def test_tables_match_the_migrations(db):
    # The classes in tables.py and the migration scripts describe the same schema on both backends.
    with db.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_base_then_upgrade_again(db):
    db.downgrade("base")
    assert db.current_revision() is None
    assert not TABLES & set(inspect(db.engine).get_table_names())
    db.upgrade()
    assert TABLES <= set(inspect(db.engine).get_table_names())


def test_concurrent_upgrades_run_one_after_the_other(fresh_url):
    databases = [Database(fresh_url) for _ in range(2)]
    errors: list[BaseException] = []

    def upgrade(database: Database) -> None:
        try:
            database.upgrade()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert databases[0].current_revision() == databases[0].head_revision()
    for database in databases:
        database.dispose()


def test_fresh_postgresql_is_out_of_date_until_upgraded(pg_url):
    database = Database(pg_url)
    with pytest.raises(SchemaOutOfDateError) as info:
        database.check_schema()
    message = str(info.value)
    assert "spikeformer db upgrade" in message
    assert "SPIKEFORMER_DATABASE_URL" in message
    assert database.head_revision() in message
    # A replica starting never migrates a shared database, even when asked to.
    with pytest.raises(SchemaOutOfDateError):
        database.ensure_ready(auto_migrate=True)
    assert database.current_revision() is None
    database.upgrade()
    database.check_schema()
    database.ensure_ready(auto_migrate=False)
    database.dispose()


def test_sqlite_is_created_and_migrated_on_first_use(tmp_path):
    path = tmp_path / "new" / "spikeformer.db"
    database = Database(f"sqlite:///{path}")
    with pytest.raises(SchemaOutOfDateError, match="spikeformer db upgrade"):
        database.ensure_ready(auto_migrate=False)
    database.ensure_ready(auto_migrate=True)
    assert path.is_file()
    assert database.current_revision() == database.head_revision()
    database.ensure_ready(auto_migrate=True)  # idempotent
    database.dispose()


def test_unknown_revision_says_the_database_is_newer(sqlite_db):
    with sqlite_db.session() as session:
        session.connection().exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff_future'")
    with pytest.raises(SchemaOutOfDateError, match="newer release"):
        sqlite_db.check_schema()


def test_unreachable_postgresql():
    database = Database("postgresql+psycopg://postgres@127.0.0.1:1/x")
    assert database.ping() is False
    database.dispose()

    database = Database("postgresql://spike:s3cret-pw@127.0.0.1:1/x")
    for action in (database.check_schema, database.current_revision):
        with pytest.raises(DatabaseUnavailableError) as info:
            action()
        assert "s3cret-pw" not in str(info.value)
        assert "spike:***@127.0.0.1:1/x" in str(info.value)
    with pytest.raises(DatabaseUnavailableError), database.session():
        pass
    database.dispose()


def test_ping_succeeds_on_a_live_database(db):
    assert db.ping() is True


def test_session_commits_on_success_and_rolls_back_on_error(db):
    with db.session() as session:
        SettingsStore(session).set("kept", 1)
    with pytest.raises(RuntimeError), db.session() as session:
        SettingsStore(session).set("dropped", 2)
        raise RuntimeError("boom")
    with db.session() as session:
        settings = SettingsStore(session)
        assert settings.get("kept") == 1
        assert settings.get("dropped") is None


def test_datetimes_come_back_aware_in_utc(db):
    with db.session() as session:
        job_id = JobStore(session).submit("m", {}, 1).id
    with db.session() as session:
        created = JobStore(session).get(job_id).created_at
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60


def test_naive_datetimes_are_refused(db):
    with pytest.raises((ValueError, StatementError), match="naive"), db.session() as session:
        record = {"model": "m", "latency_ms": 1.0, "status": "ok", "http_status": 200}
        InferenceRecordStore(session).add_many([record | {"created_at": datetime(2024, 1, 1)}])


def test_migrations_are_found_next_to_the_package(monkeypatch, tmp_path):
    import spikeformer.store.database as module

    assert module.migrations_dir() == Path(module.__file__).resolve().parent / "migrations"  # package data
    monkeypatch.setenv("SPIKEFORMER_MIGRATIONS_DIR", str(tmp_path))  # a folder without env.py
    with pytest.raises(StoreError, match="SPIKEFORMER_MIGRATIONS_DIR"):
        Database(f"sqlite:///{tmp_path / 'x.db'}").upgrade()


def test_in_memory_sqlite_keeps_one_database():
    database = Database("sqlite://")
    database.ensure_ready(auto_migrate=True)
    with database.session() as session:
        SettingsStore(session).set("k", [1, 2])
    with database.session() as session:
        assert SettingsStore(session).get("k") == [1, 2]
    database.dispose()
