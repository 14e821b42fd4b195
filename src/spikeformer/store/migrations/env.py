"""Alembic environment for spikeformer.

At run time `spikeformer.store.Database.upgrade()` passes its own connection in `config.attributes["connection"]`
(and holds the migration lock around it). From the command line (`alembic -c alembic.ini revision --autogenerate
-m "..."`) the URL is `sqlalchemy.url` if set, else `SPIKEFORMER_DATABASE_URL`, else the default SQLite file.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine

from spikeformer.store.database import _normalise_url, default_database_url
from spikeformer.store.tables import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name)  # command line only: never reconfigure a running service's logging
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (`alembic upgrade head --sql`) instead of running it."""
    url = config.get_main_option("sqlalchemy.url") or default_database_url()
    context.configure(url=str(_normalise_url(url)), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or default_database_url()
    engine = create_engine(_normalise_url(url))
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
