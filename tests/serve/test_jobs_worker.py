"""Batch jobs through the API and ``spikeformer worker`` (in-process and as real processes that get killed)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from spikeformer.serve.app import create_app
from spikeformer.serve.worker import Worker, WorkerOptions
from spikeformer.store import ApiKeyStore, Database, JobStore
from support import make_settings


def _submit_images(client, n=5):
    imgs = np.random.default_rng(0).integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
    r = client.post(
        "/v1/jobs", json={"model": "tiny", "images": {"shape": [n, 28, 28], "datatype": "UINT8", "data": imgs.tolist()}}
    )
    assert r.status_code == 202, r.text
    return r.json(), imgs


def test_job_images_run_by_worker_match_direct_inference(service):
    client, settings = service
    job, imgs = _submit_images(client)
    assert job["status"] == "queued" and job["total"] == 5
    done = Worker(settings, WorkerOptions(max_jobs=1, poll_s=0.05, chunk_size=2)).run()
    assert done == 1
    view = client.get(f"/v1/jobs/{job['id']}").json()
    assert view["status"] == "done" and view["progress"] == 5 and view["attempts"] == 1
    direct = client.post(
        "/v2/models/tiny/infer",
        json={
            "inputs": [{"name": "x", "shape": [5, 28, 28], "datatype": "UINT8", "data": imgs.tolist()}],
            "outputs": [{"name": "class"}],
        },
    ).json()
    assert view["result"]["predictions"] == direct["outputs"][0]["data"]


def test_dataset_slice_job_reports_accuracy(service):
    client, settings = service
    r = client.post(
        "/v1/jobs",
        json={"model": "tiny", "dataset": {"name": "fashion-mnist", "split": "test", "start": 10, "count": 20}},
    )
    assert r.status_code == 202
    Worker(settings, WorkerOptions(max_jobs=1, poll_s=0.05)).run()
    result = client.get(f"/v1/jobs/{r.json()['id']}").json()["result"]
    assert len(result["predictions"]) == 20 and 0 <= result["top1"] <= 1


def test_bad_job_submissions(service):
    client, _ = service
    assert client.post("/v1/jobs", json={"model": "tiny"}).status_code == 400
    r = client.post("/v1/jobs", json={"model": "tiny", "dataset": {"name": "fashion-mnist", "count": 0}})
    assert r.status_code == 400 and "count" in r.json()["error"]
    assert client.post("/v1/jobs", json={"model": "nope", "dataset": {"name": "x", "count": 1}}).status_code == 404
    assert client.get("/v1/jobs/does-not-exist").status_code == 404


def _worker_cmd(settings, lease):
    return [
        sys.executable,
        "-m",
        "spikeformer.cli",
        "worker",
        "--model-repository",
        str(settings.model_repository),
        "--database-url",
        settings.database_url,
        "--lease",
        str(lease),
        "--chunk-size",
        "50",
    ]


def test_worker_killed_mid_job_is_reclaimed_and_completed_once(repository, tmp_path):
    settings = make_settings(repository, f"sqlite:///{tmp_path / 'jobs.db'}")
    db = Database(settings.database_url)
    db.ensure_ready()
    with db.session() as s:
        job = JobStore(s).submit(
            "tiny", {"kind": "dataset", "name": "fashion-mnist", "split": "test", "start": 0, "count": 3000}, 3000
        )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        _worker_cmd(settings, lease=2), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until it has made progress, then kill it without warning
        with db.session() as s:
            j = JobStore(s).get(job.id)
        if j.status == "running" and j.progress > 0:
            break
        time.sleep(0.05)
    assert j.status == "running" and 0 < j.progress < 3000, (j.status, j.progress)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = subprocess.run(
        _worker_cmd(settings, lease=2) + ["--max-jobs", "1"], env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr[-2000:]
    with db.session() as s:
        j = JobStore(s).get(job.id)
    assert j.status == "done" and j.attempts == 2 and j.progress == 3000
    assert j.worker_id and j.worker_id in second.stderr


def test_two_workers_side_by_side_do_no_double_work(repository, tmp_path):
    settings = make_settings(repository, f"sqlite:///{tmp_path / 'two.db'}")
    db = Database(settings.database_url)
    db.ensure_ready()
    with db.session() as s:
        ids = [
            JobStore(s)
            .submit(
                "tiny", {"kind": "dataset", "name": "fashion-mnist", "split": "test", "start": i * 10, "count": 10}, 10
            )
            .id
            for i in range(6)
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            _worker_cmd(settings, lease=30) + ["--idle-exit", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    logs = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    with db.session() as s:
        jobs = [JobStore(s).get(i) for i in ids]
    assert all(j.status == "done" and j.attempts == 1 for j in jobs)
    finished = [
        int(line.split("finished ")[1].split()[0])
        for log in logs
        for line in log.splitlines()
        if "finished" in line and "job(s)" in line
    ]
    assert sum(finished) == 6


def _image_folder(root, classes=("a", "b"), per_class=5):
    """``root/<class>/<i>.png``: 28x28 grayscale images; the ``test`` split is every 5th image of each class."""
    from PIL import Image

    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def _folder_job(client, path, count=2, headers=None):
    body = {"model": "tiny", "dataset": {"name": f"folder:{path}", "split": "test", "count": count}}
    return client.post("/v1/jobs", json=body, headers=headers or {})


def _job_counts(settings):
    with Database(settings.database_url).session() as s:
        return JobStore(s).count_by_status()


@pytest.mark.security
def test_http_jobs_read_no_folder_data_set_without_data_roots(service, tmp_path):
    client, settings = service
    data = _image_folder(tmp_path / "data")
    for path in ("/etc", data):
        r = _folder_job(client, path)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert "data roots" in error and "fashion-mnist" in error, error
    assert sum(_job_counts(settings).values()) == 0  # nothing was queued for a worker to read


@pytest.mark.security
def test_http_jobs_read_folder_data_sets_only_under_the_data_roots(repository, tmp_path):
    roots = tmp_path / "roots"
    _image_folder(roots / "shapes")
    outside = _image_folder(tmp_path / "outside")
    (roots / "link").symlink_to(outside, target_is_directory=True)
    settings = make_settings(repository, f"sqlite:///{tmp_path / 'roots.db'}", job_data_roots=[roots])
    with TestClient(create_app(settings)) as client:
        for path in ("/etc", outside, f"{roots}/../outside", roots / "link", "../outside", "shapes\x00"):
            r = _folder_job(client, path)
            assert r.status_code == 400, (path, r.text)
            error = r.json()["error"]
            assert "data roots" in error and str(roots) not in error, error
        assert sum(_job_counts(settings).values()) == 0
        absolute, relative = _folder_job(client, roots / "shapes"), _folder_job(client, "shapes")
        assert absolute.status_code == 202 and relative.status_code == 202, (absolute.text, relative.text)
        assert Worker(settings, WorkerOptions(max_jobs=2, poll_s=0.05)).run() == 2
        for r in (absolute, relative):
            view = client.get(f"/v1/jobs/{r.json()['id']}").json()
            assert view["status"] == "done" and len(view["result"]["predictions"]) == 2, view


@pytest.mark.security
def test_job_errors_name_no_host_paths_and_list_no_folders(repository, tmp_path):
    roots = tmp_path / "roots"
    (roots / "empty" / "secret-class").mkdir(parents=True)  # class folders but no images
    settings = make_settings(repository, f"sqlite:///{tmp_path / 'errors.db'}", job_data_roots=[roots])
    db = Database(settings.database_url)
    db.ensure_ready()
    etc = sorted(p.name for p in Path("/etc").iterdir() if p.is_dir())
    slice_of = {"kind": "dataset", "split": "test", "start": 0, "count": 5}
    with db.session() as s:  # as if queued directly, or before the data roots were narrowed
        ids = [
            JobStore(s).submit("tiny", {**slice_of, "name": "folder:/etc"}, 5).id,
            JobStore(s).submit("tiny", {**slice_of, "name": f"folder:{roots / 'empty'}"}, 5).id,
            JobStore(s).submit("tiny", {**slice_of, "name": "folder:../.."}, 5).id,
            JobStore(s).submit("nope", {**slice_of, "name": "fashion-mnist"}, 5).id,
        ]
    Worker(settings, WorkerOptions(poll_s=0.01, idle_exit_s=0.1)).run()
    with db.session() as s:
        jobs = [JobStore(s).get(i) for i in ids]
    for job in jobs:
        assert job.status == "failed" and job.error, (job.status, job.error)
        leaked = [w for w in (str(tmp_path), str(repository), "/etc", "secret-class", *etc) if w in job.error]
        assert not leaked, (job.error, leaked)
    assert "data roots" in jobs[0].error and "no images" in jobs[1].error and "'nope'" in jobs[3].error


def _keys(settings, *names):
    with Database(settings.database_url).session() as s:
        return [{"Authorization": f"Bearer {ApiKeyStore(s).create(n, ['infer'])[0]}"} for n in names]


@pytest.mark.security
def test_pending_jobs_are_capped_globally_and_per_key(repository, tmp_path):
    settings = make_settings(
        repository,
        f"sqlite:///{tmp_path / 'cap.db'}",
        require_api_key=True,
        max_pending_jobs=3,
        max_pending_jobs_per_key=2,
    )
    with TestClient(create_app(settings)) as client:
        a, b = _keys(settings, "a", "b")
        body = {"model": "tiny", "dataset": {"name": "fashion-mnist", "split": "test", "count": 5}}
        assert [client.post("/v1/jobs", json=body, headers=a).status_code for _ in range(2)] == [202, 202]
        r = client.post("/v1/jobs", json=body, headers=a)
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, r.text
        assert "2 pending jobs" in r.json()["error"] and "this API key" in r.json()["error"]
        assert client.post("/v1/jobs", json=body, headers=b).status_code == 202  # b has its own bucket
        r = client.post("/v1/jobs", json=body, headers=b)
        assert r.status_code == 503 and "3 pending jobs" in r.json()["error"] and "Retry-After" in r.headers
        assert _job_counts(settings)["queued"] == 3
        assert Worker(settings, WorkerOptions(max_jobs=1, poll_s=0.01)).run() == 1  # a's first job finishes
        assert client.post("/v1/jobs", json=body, headers=b).status_code == 202
        assert client.post("/v1/jobs", json=body, headers=a).status_code == 503  # the global cap again


@pytest.mark.security
def test_keyless_jobs_share_one_pending_bucket(repository, tmp_path):
    settings = make_settings(repository, f"sqlite:///{tmp_path / 'keyless.db'}", max_pending_jobs_per_key=2)
    with TestClient(create_app(settings)) as client:
        (key,) = _keys(settings, "ignored")  # keys are not required: a presented key is not looked at
        body = {"model": "tiny", "dataset": {"name": "fashion-mnist", "split": "test", "count": 5}}
        assert [client.post("/v1/jobs", json=body).status_code for _ in range(2)] == [202, 202]
        for headers in ({}, key, {"X-API-Key": "sfk_made_up"}):
            r = client.post("/v1/jobs", json=body, headers=headers)
            assert r.status_code == 503 and "without an API key" in r.json()["error"], r.text
            assert "Retry-After" in r.headers
