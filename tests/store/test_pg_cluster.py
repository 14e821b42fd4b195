"""The test cluster helper fails loudly, with the install command, where PostgreSQL is missing."""

from __future__ import annotations

import pytest

import pg_cluster


def test_missing_postgresql_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKEFORMER_PG_BINDIR", str(tmp_path))
    monkeypatch.setattr(pg_cluster.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(pg_cluster.shutil, "which", lambda name: None)
    with pytest.raises(pg_cluster.PostgresNotInstalledError, match="apt-get install postgresql"):
        pg_cluster.PostgresCluster()


def test_cluster_serves_its_databases(pg_cluster):
    import psycopg

    url = pg_cluster.create_database("cluster_check")
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{pg_cluster.port}/cluster_check"
    with psycopg.connect(host="127.0.0.1", port=pg_cluster.port, user="postgres", dbname="cluster_check") as conn:
        assert conn.execute("SHOW fsync").fetchone()[0] == "off"
        assert conn.execute("SELECT current_database()").fetchone()[0] == "cluster_check"


def test_server_can_be_stopped_and_started_on_the_same_port(tmp_path):
    from spikeformer.store import Database, DatabaseUnavailableError

    with pg_cluster.PostgresCluster() as cluster:
        database = Database(cluster.url)
        assert database.ping()
        port = cluster.port
        cluster.stop_server()
        assert not database.ping()
        with pytest.raises(DatabaseUnavailableError):
            database.current_revision()
        cluster.start_server()
        assert cluster.port == port and database.ping()  # pool_pre_ping replaces the dead connections
        database.dispose()
