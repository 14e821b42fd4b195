"""Engine, sessions and schema migrations for SQLite (one machine) and PostgreSQL (many machines).

The schema is owned by the Alembic migrations in `spikeformer/store/migrations/`, shipped inside the package (so an
installed wheel can migrate) and run programmatically (no `alembic.ini` is read at run time). The setting
`migrations_dir` (`SPIKEFORMER_MIGRATIONS_DIR`) points at another folder, e.g. a site's own migrations.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from spikeformer.settings import get_settings
from spikeformer.store.errors import DatabaseUnavailableError, SchemaOutOfDateError, StoreError

__all__ = ["DATABASE_URL_ENV", "Database", "default_database_url", "migrations_dir"]

# Names of the environment variables behind the settings used here (read by `spikeformer.settings`), for messages.
DATABASE_URL_ENV = "SPIKEFORMER_DATABASE_URL"
HOME_ENV = "SPIKEFORMER_HOME"
MIGRATIONS_ENV = "SPIKEFORMER_MIGRATIONS_DIR"
# The Alembic scripts shipped with the package (package data).
PACKAGED_MIGRATIONS = Path(__file__).resolve().with_name("migrations")

SQLITE_BUSY_TIMEOUT_S = 30.0  # how long a writer waits for SQLite's single write lock before failing


def _enable_wal(cursor: Any) -> None:
    """Switch a SQLite database to WAL (persistent in the file). On a new database two processes may race here, and
    the switch can fail at once with "database is locked" without waiting for the busy timeout: retry until then."""
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


PG_CONNECT_TIMEOUT_S = 5  # seconds; keeps `ping()` and readiness probes quick when the server is gone
# Key of the PostgreSQL advisory lock held while migrating, so replicas that upgrade at once run it one at a time.
_MIGRATION_LOCK_KEY = 0x5F5F_5350_4B46  # arbitrary, fits a bigint


def default_database_url() -> str:
    """The settings' `database_url` (`SPIKEFORMER_DATABASE_URL`), else a SQLite file under `home`
    (`SPIKEFORMER_HOME`, default `./var`).

    The folder of the SQLite file is created.
    """
    settings = get_settings()
    return settings.database_url or settings.sqlite_url()


def migrations_dir() -> Path:
    """The Alembic script folder: the settings' `migrations_dir` (`SPIKEFORMER_MIGRATIONS_DIR`) if set, else the
    package's own `spikeformer/store/migrations/`.

    Raises:
        StoreError: the folder holds no Alembic `env.py`.
    """
    override = get_settings().migrations_dir
    folder = override.expanduser() if override is not None else PACKAGED_MIGRATIONS
    if (folder / "env.py").is_file():
        return folder
    if override is not None:
        raise StoreError(
            f"Alembic migrations not found in {folder} ({MIGRATIONS_ENV}): point it at a folder holding env.py and "
            f"versions/, or unset it to use the migrations shipped with the package."
        )
    raise StoreError(
        f"Alembic migrations not found in {folder}: this spikeformer installation is incomplete (the package ships "
        f"them as package data); reinstall it, or set {MIGRATIONS_ENV} to a folder holding env.py and versions/."
    )


def _normalise_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


class Database:
    """One database: its engine, a session factory and its schema revision.

    Args:
        url: SQLAlchemy URL; `postgresql://` is read as `postgresql+psycopg://` (psycopg 3). Defaults to
            `default_database_url()`.

    SQLite connections use WAL (readers do not block the writer), a busy timeout and foreign keys. PostgreSQL
    connections are checked before use (`pool_pre_ping`) and never prepare statements on the server, which
    pgbouncer in transaction mode cannot route.
    """

    def __init__(self, url: str | None = None) -> None:
        self._url = _normalise_url(url or default_database_url())
        self.url = self._url.render_as_string(hide_password=False)
        self.engine = self._create_engine()
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({self.safe_url!r})"

    @property
    def safe_url(self) -> str:
        """The URL with its password replaced by `***`, fit for logs and error messages."""
        return self._url.render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        """Whether the backend is SQLite."""
        return self._url.get_backend_name() == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        """Whether the backend is PostgreSQL."""
        return self._url.get_backend_name() == "postgresql"

    def _create_engine(self) -> Engine:
        if self.is_sqlite:
            return self._create_sqlite_engine()
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if self.is_postgresql:
            connect_args: dict[str, Any] = {"prepare_threshold": None}
            query = self._url.query
            if "connect_timeout" not in query:
                connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
            if "application_name" not in query:
                connect_args["application_name"] = "spikeformer"
            kwargs["connect_args"] = connect_args
        return create_engine(self._url, **kwargs)

    def _create_sqlite_engine(self) -> Engine:
        database = self._url.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        if in_memory:
            # One shared connection, or every checkout would see its own empty database.
            engine = create_engine(self._url, connect_args=connect_args, poolclass=StaticPool)
        else:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self._url, connect_args=connect_args)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if not in_memory:
                _enable_wal(cursor)
                cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses no committed data
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine

    # -- connections and sessions -----------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailableError:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        detail = reason[0] if reason else type(exc).__name__
        if self._url.password:
            detail = detail.replace(str(self._url.password), "***")
        return DatabaseUnavailableError(f"cannot connect to the database at {self.safe_url}: {detail}")

    def connect(self) -> Connection:
        """A new connection from the pool; `DatabaseUnavailableError` if the database cannot be reached."""
        try:
            return self.engine.connect()
        except OperationalError as exc:
            raise self._unavailable(exc) from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back if it raises.

        Objects stay readable after the commit (`expire_on_commit=False`). Raises `DatabaseUnavailableError` when
        the database cannot be reached.
        """
        with self.sessionmaker() as session:
            try:
                session.connection()
            except OperationalError as exc:
                raise self._unavailable(exc) from None
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> bool:
        """Whether a trivial query succeeds; never raises."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # -- schema -----------------------------------------------------------------------------------------------

    def _alembic_config(self, connection: Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(migrations_dir()))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        config.attributes["connection"] = connection
        return config

    def head_revision(self) -> str:
        """The newest revision of the migration scripts."""
        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        if head is None:
            raise StoreError(f"no migration revisions found in {migrations_dir()}")
        return head

    def current_revision(self) -> str | None:
        """The database's revision, or None for a database that was never migrated."""
        with self.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to `revision` (creating the tables on a new database).

        Concurrent upgrades from several processes run one after the other (an advisory lock on PostgreSQL, the
        write lock on SQLite); the later ones find nothing left to do.
        """
        self._migrate(command.upgrade, revision)

    def downgrade(self, revision: str) -> None:
        """Migrate the schema down to `revision` (`"base"` drops every table)."""
        self._migrate(command.downgrade, revision)

    def _migrate(self, run: Any, revision: str) -> None:
        with self.connect() as connection, connection.begin():
            if self.is_sqlite:
                # Take the write lock first: DDL on SQLite is transactional, so the whole upgrade is one transaction.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            elif self.is_postgresql:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            run(self._alembic_config(connection), revision)

    def check_schema(self) -> None:
        """Raise `SchemaOutOfDateError` unless the database is at the head revision.

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
            SchemaOutOfDateError: the schema is missing, behind, or ahead of this code.
        """
        current = self.current_revision()
        head = self.head_revision()
        if current == head:
            return
        script = ScriptDirectory.from_config(self._alembic_config())
        known = current is None or any(rev.revision == current for rev in script.walk_revisions())
        fix = f"{DATABASE_URL_ENV}='{self.safe_url}' spikeformer db upgrade"
        if not known:
            raise SchemaOutOfDateError(
                f"database schema is at revision {current}, which this code does not know (expected {head}): "
                f"the database was migrated by a newer release; deploy that release, or downgrade the database "
                f"with the release that created it."
            )
        where = "empty (never migrated)" if current is None else f"at revision {current}"
        raise SchemaOutOfDateError(f"database schema is {where}, expected revision {head}. Run: {fix}")

    def ensure_ready(self, auto_migrate: bool = True) -> None:
        """Make sure the schema is current before serving.

        SQLite (one machine) is created and migrated on first use when `auto_migrate` is true. PostgreSQL is only
        checked: migrating a shared database is a deliberate step (`spikeformer db upgrade`), never a side effect
        of a replica starting.
        """
        if self.is_sqlite and auto_migrate:
            self.upgrade()
        self.check_schema()
