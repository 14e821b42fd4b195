"""``spikeformer doctor`` against a live service, a corrupted model and an unreachable database."""

import json

from typer.testing import CliRunner

from spikeformer.cli import app
from spikeformer.ops.doctor import check_disk, check_models, run_doctor
from spikeformer.store import Database
from support import make_repository, start_server

runner = CliRunner()


def test_doctor_ranks_findings_and_exits_nonzero(tmp_path):
    repo = make_repository(tmp_path / "models")  # tiny/3 is corrupt
    db_url = f"sqlite:///{tmp_path / 'doc.db'}"
    Database(db_url).upgrade()
    proc, url = start_server(repo, db_url)
    try:
        r = runner.invoke(
            app, ["doctor", "--url", url, "--model-repository", str(repo), "--database-url", db_url, "--json"]
        )
    finally:
        proc.kill()
        proc.wait()
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert report["worst"] == "SEV-2" and report["ok"] is False
    first = report["findings"][0]
    assert first["check"] == "models" and "tiny/3" in first["message"] and "sha256" in first["message"]
    assert any(f["check"] == "health" and f["ok"] for f in report["findings"])
    assert any(f["check"] == "database" and f["ok"] for f in report["findings"])


def test_doctor_reports_a_down_service_and_database_as_sev1(tmp_path):
    repo = make_repository(tmp_path / "models")
    report = run_doctor("http://127.0.0.1:9", repo, "postgresql+psycopg://postgres:secret@127.0.0.1:9/x")
    sevs = {f.check: f.sev for f in report.ranked() if not f.ok}
    assert sevs["health"] == "SEV-1" and sevs["database"] == "SEV-1"
    assert "secret" not in json.dumps(report.to_dict())


def test_model_and_disk_checks(tmp_path):
    assert check_models(tmp_path / "none")[0].sev == "SEV-1"
    good = make_repository(tmp_path / "m")
    findings = check_models(good)
    assert [f.sev for f in findings] == [None, None, "SEV-2"]
    assert check_disk(good, min_free_gib=0.001)[0].ok
    assert check_disk(good, min_free_gib=1e9)[0].sev == "SEV-3"


def test_runbook_script_is_a_thin_wrapper(tmp_path):
    import subprocess
    import sys

    repo = make_repository(tmp_path / "models")
    r = subprocess.run(
        [
            sys.executable,
            "scripts/check_hardware_status.py",
            "--url",
            "",
            "--model-repository",
            str(repo),
            "--database-url",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1  # tiny/3 is corrupt and the database is not migrated
    assert json.loads(r.stdout)["worst"] == "SEV-2"
