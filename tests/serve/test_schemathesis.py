"""Schemathesis generates requests from /openapi.json against a running server: no answer is a 500."""

import os
import subprocess
import sys
from pathlib import Path

from spikeformer.store import ApiKeyStore, Database
from support import make_repository, start_server


def test_schemathesis_finds_no_server_error(tmp_path):
    repo = make_repository(tmp_path / "models")
    db_url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    proc, url = start_server(repo, db_url)
    try:
        with Database(db_url).session() as s:
            admin, _ = ApiKeyStore(s).create("fuzz", ["admin"])
        st = Path(sys.executable).with_name("st")
        run = subprocess.run(
            [
                str(st),
                "run",
                f"{url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "20",
                # these two put the server in states where 503 is the right answer (maintenance,
                # unloaded model); tests/serve/test_api.py covers them
                "--exclude-path",
                "/v1/admin/maintenance",
                "--exclude-path",
                "/v2/repository/models/{name}/unload",
                "-H",
                f"Authorization: Bearer {admin}",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "NO_COLOR": "1"},
        )
    finally:
        proc.kill()
        proc.wait()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "passed" in run.stdout.lower()
