"""``spikeformer db long-queries`` on a real PostgreSQL with a pg_sleep query: cancel first, terminate on demand."""

import json
import threading
import time

import psycopg
import pytest
from typer.testing import CliRunner

from pg_cluster import PostgresCluster
from spikeformer.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    c = PostgresCluster()
    yield c
    c.stop()


def _sleeper(cluster, seconds, outcome):
    try:
        with psycopg.connect(host="127.0.0.1", port=cluster.port, user="postgres", dbname="postgres") as conn:
            conn.execute(f"SELECT pg_sleep({seconds})")
        outcome.append("finished")
    except psycopg.errors.QueryCanceled:
        outcome.append("cancelled")
    except psycopg.OperationalError:
        outcome.append("terminated")


def _start(cluster, outcome):
    t = threading.Thread(target=_sleeper, args=(cluster, 30, outcome))
    t.start()
    time.sleep(1.5)
    return t


@pytest.mark.parametrize("flag,expected", [("--cancel", "cancelled"), ("--terminate", "terminated")])
def test_long_queries_found_and_stopped(cluster, flag, expected):
    outcome = []
    t = _start(cluster, outcome)
    listed = runner.invoke(app, ["db", "long-queries", "--older-than", "1s", "--database-url", cluster.url, "--json"])
    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)["queries"]
    assert any("pg_sleep" in r["query"] for r in rows)
    assert not outcome  # listing alone stops nothing
    acted = runner.invoke(
        app, ["db", "long-queries", "--older-than", "1s", flag, "--database-url", cluster.url, "--json"]
    )
    assert acted.exit_code == 0
    assert all(r["signalled"] for r in json.loads(acted.stdout)["queries"] if "pg_sleep" in r["query"])
    t.join(20)
    assert outcome == [expected]


def test_long_queries_argument_errors(cluster):
    r = runner.invoke(app, ["db", "long-queries", "--cancel", "--terminate", "--database-url", cluster.url])
    assert r.exit_code != 0 and "not both" in r.stderr
    r = runner.invoke(app, ["db", "long-queries", "--older-than", "soon", "--database-url", cluster.url])
    assert r.exit_code != 0 and "duration" in r.stderr
    r = runner.invoke(app, ["db", "long-queries", "--database-url", "sqlite:///x.db"])
    assert r.exit_code != 0 and "PostgreSQL" in r.stderr
