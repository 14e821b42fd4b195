"""Batch jobs through the API and ``spikeformer worker`` (in-process and as real processes that get killed)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from spikeformer.serve.worker import Worker, WorkerOptions
from spikeformer.store import Database, JobStore
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
