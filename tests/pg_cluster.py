"""A private, throw-away PostgreSQL server for tests: `initdb` in a temporary folder, `pg_ctl start` on a free port.

    with PostgresCluster() as cluster:
        url = cluster.create_database("t1")   # postgresql+psycopg://postgres@127.0.0.1:PORT/t1

The server runs as the `postgres` OS user when the tests run as root (initdb refuses root), else as the current
user. It trusts every local connection and runs with fsync off: fast, and for tests only. Binaries are taken from
`SPIKEFORMER_PG_BINDIR`, else the newest `/usr/lib/postgresql/<version>/bin`, else `initdb` on PATH.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresCluster", "PostgresNotInstalledError", "find_pg_bindir"]

_INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install them with `apt-get install postgresql` "
    "(or set SPIKEFORMER_PG_BINDIR to the folder holding initdb and pg_ctl). The store tests need a real server."
)


class PostgresNotInstalledError(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_pg_bindir() -> Path:
    """The folder of `initdb` and `pg_ctl`: `SPIKEFORMER_PG_BINDIR`, the newest `/usr/lib/postgresql/*/bin`, PATH."""
    override = os.environ.get("SPIKEFORMER_PG_BINDIR", "").strip()
    candidates = [Path(override)] if override else []

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", Path(path).parent.name))

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PostgresNotInstalledError(_INSTALL_HINT)


def _postgres_user() -> pwd.struct_passwd:
    """The `postgres` OS account, which runs the server when the tests run as root (initdb refuses root)."""
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresNotInstalledError(
            "running as root, but there is no `postgres` OS user to run the server as: " + _INSTALL_HINT
        ) from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only.

    Args:
        bindir: folder of `initdb` and `pg_ctl` (default: `find_pg_bindir()`).
        start: start it at once (otherwise call `start()`).
    """

    def __init__(self, bindir: Path | None = None, start: bool = True) -> None:
        self.bindir = bindir or find_pg_bindir()
        self.port: int | None = None
        self.root: Path | None = None
        self.running = False
        self._owner = _postgres_user() if os.geteuid() == 0 else None
        if start:
            self.start()

    @property
    def datadir(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "data"

    @property
    def url(self) -> str:
        """URL of the `postgres` database as the `postgres` superuser."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """URL of `database` on this cluster."""
        if self.port is None:
            raise RuntimeError("cluster not started")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [str(a) for a in args]
        if self._owner is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root, check=False)
        if result.returncode != 0:
            log = self.root / "server.log" if self.root else None
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{tail}"
            )
        return result

    def _options(self, port: int) -> str:
        return " ".join(
            [
                f"-p {port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=60",
                "-c shared_buffers=32MB",
            ]
        )

    def _pg_ctl_start(self, port: int) -> None:
        assert self.root is not None
        log = str(self.root / "server.log")
        options = ["-l", log, "-o", self._options(port), "-w", "-t", "60"]
        self._run(self.bindir / "pg_ctl", "-D", self.datadir, *options, "start")

    def start(self) -> None:
        """Create the cluster and start the server (a few seconds)."""
        if self.port is not None:
            return
        self.root = Path(tempfile.mkdtemp(prefix="spikeformer-pg-"))
        try:
            if self._owner is not None:
                os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)
            options = ["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"]
            self._run(self.bindir / "initdb", "-D", self.datadir, *options)
        except BaseException:
            self._remove()
            raise
        for attempt in range(3):  # the free port may be taken between choosing it and binding it
            port = _free_port()
            try:
                self._pg_ctl_start(port)
            except RuntimeError:
                if attempt == 2:
                    self._remove()
                    raise
                continue
            self.port = port
            self.running = True
            return

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server but keep its data and port, to simulate an outage; `start_server()` brings it back.

        Args:
            mode: `pg_ctl stop` mode: `smart`, `fast` (disconnect clients) or `immediate` (like a crash).
        """
        if self.port is None:
            raise RuntimeError("cluster not started")
        if self.running:
            self._run(self.bindir / "pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")
            self.running = False

    def start_server(self) -> None:
        """Start a server stopped by `stop_server()` again, on the same port."""
        if self.port is None:
            raise RuntimeError("cluster not started")
        if not self.running:
            self._pg_ctl_start(self.port)
            self.running = True

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database `name`, empty or as a copy of database `template`, and return its URL.

        Copying a migrated template is much faster than migrating every test database; the template must have no
        open connections.
        """
        import psycopg

        for value in (name, template or "x"):
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
                raise ValueError(f"database name {value!r}: use lower-case letters, digits and underscores")
        sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres") as conn:
            conn.autocommit = True
            conn.execute(sql)
        return self.url_for(name)

    def stop(self) -> None:
        """Stop the server and delete its folder."""
        if self.port is not None:
            try:
                if self.running:
                    self._run(self.bindir / "pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
            finally:
                self.port = None
                self.running = False
        self._remove()

    def _remove(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
