"""`spikeformer.ops.smoke` against an in-process service: every check, the accuracy rule, the routes it reads
(`/v1/models/{name}/samples`, `/v1/records/{id}`, `parameters.record_id`) and the judgement used to close incidents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from math import comb

import pytest

from spikeformer.ops.smoke import SmokeResultError, assess_result, min_matches, run_smoke
from support import free_port, make_repository


def _names(result) -> dict[str, str]:
    return {c.name: c.status for c in result.checks}


def test_smoke_passes_against_a_healthy_service(service):
    result = run_smoke("http://testserver", service.admin, client=service.client, record_wait_s=10)
    assert _names(result) == {
        "live": "pass",
        "ready": "pass",
        "model:tiny": "pass",
        "infer:tiny": "pass",
        "accuracy:tiny": "pass",
        "metrics": "pass",
        "database": "pass",
    }, result.lines()
    assert result.ok and result.failed == []
    by_name = {c.name: c for c in result.checks}
    assert "10 reference image(s)" in by_name["infer:tiny"].detail
    assert by_name["accuracy:tiny"].data["min_matches"] == 0  # recorded top-1 10 %: any match rate is healthy
    doc = result.to_dict()
    assert doc["ok"] is True and doc["summary"].startswith("PASSED: 7 passed, 0 failed, 0 skipped")
    assert all(c["seconds"] >= 0 for c in doc["checks"])
    assert result.lines()[-1].startswith("smoke http://testserver: PASSED")


def test_the_answer_names_its_record_and_the_record_reads_back(service):
    body = {"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "UINT8", "data": [7] * 784}]}
    answer = service.client.post("/v2/models/tiny/infer", json=body).json()
    record_id = answer["parameters"]["record_id"]
    assert service.client.get(f"/v1/records/{record_id}").status_code == 401
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while (r := service.client.get(f"/v1/records/{record_id}", headers=service.auth())).status_code == 404:
        assert datetime.now(UTC) < deadline, r.text
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["id"] == record_id and record["model"] == "tiny" and record["status"] == "ok"
    assert record["spikes"] == answer["parameters"]["spikes_total"]
    alerts = service.client.get(f"/v1/records/{record_id}", headers=service.auth(service.alerts))
    assert alerts.status_code == 200
    missing = service.client.get("/v1/records/not-a-record", headers=service.auth())
    assert missing.status_code == 404 and "no inference record 'not-a-record'" in missing.json()["error"]


def test_samples_route_serves_the_manifest_images(service):
    body = service.client.get("/v1/models/tiny/samples").json()
    assert body["shape"] == [10, 1, 28, 28] and body["labels"] == list(range(10)) and body["datatype"] == "UINT8"
    assert body["metrics"] == {"top1": 0.1} and body["class_names"][0] == "T-shirt/top"
    unknown = service.client.get("/v1/models/nope/samples")
    assert unknown.status_code == 404 and "unknown model 'nope'" in unknown.json()["error"]


def test_a_checkpoint_without_reference_images_is_checked_on_random_ones(start_service, tmp_path):
    svc = start_service(make_repository(tmp_path / "plain"))  # tiny/1, tiny/2 without samples, tiny/3 corrupt
    assert "carries no reference images" in svc.client.get("/v1/models/tiny/samples").json()["error"]
    result = run_smoke("http://testserver", svc.admin, client=svc.client)
    status = _names(result)
    assert status["infer:tiny"] == "pass" and status["accuracy:tiny"] == "skip"
    assert result.ok, result.lines()
    assert "4 random" in next(c.detail for c in result.checks if c.name == "infer:tiny")


def test_a_model_worse_than_its_manifest_fails_the_accuracy_check(
    start_service, model_repository, untrained_predictions, tmp_path
):
    wrong = [(c + 1) % 10 for c in untrained_predictions]  # labels the untrained model never gives
    svc = start_service(model_repository(tmp_path / "claims", top1=0.95, labels=wrong))
    result = run_smoke("http://testserver", svc.admin, client=svc.client)
    assert result.failed == ["accuracy:tiny"], result.lines()
    check = next(c for c in result.checks if c.name == "accuracy:tiny")
    assert check.detail.startswith("0/10 reference images classified as labelled")
    assert f"needs at least {min_matches([0.95] * 10)} " in check.detail  # 6
    assert not result.ok and result.summary().startswith("FAILED (accuracy:tiny)")


def test_without_a_key_the_database_round_trip_is_skipped(service):
    result = run_smoke("http://testserver", None, client=service.client)
    database = next(c for c in result.checks if c.name == "database")
    assert database.status == "skip" and "--api-key" in database.detail
    assert result.ok


def test_a_rejected_key_fails_the_database_check(service):
    result = run_smoke("http://testserver", "sfk_not_a_key", client=service.client, record_wait_s=1)
    assert result.failed == ["database"] and "cannot read records" in result.checks[-1].detail


def test_an_unreachable_service_fails_live_and_skips_the_rest():
    result = run_smoke(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    assert _names(result) == {"live": "fail", "ready": "skip", "models": "skip", "metrics": "skip", "database": "skip"}
    assert not result.ok and "ConnectError" in result.checks[0].detail
    with pytest.raises(ValueError, match="http:// or https://"):
        run_smoke("ftp://example")


@pytest.mark.parametrize(
    ("accuracies", "expected"),
    [
        ([0.9] * 10, 5),  # P(X <= 4) = 0.00015 <= 0.001 < P(X <= 5) = 0.0016
        ([0.1] * 10, 0),  # an untrained model: any result is healthy
        ([0.99] * 10, 8),
        ([0.5] * 10, 1),
        ([1.0] * 3, 3),
        ([], 0),
    ],
)
def test_min_matches_is_the_binomial_quantile(accuracies, expected):
    k = min_matches(accuracies)
    assert k == expected
    if accuracies and len(set(accuracies)) == 1:
        p, n = accuracies[0], len(accuracies)
        below = sum(comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k))
        assert below <= 0.001
        if k < n:
            assert below + comb(n, k) * p**k * (1 - p) ** (n - k) > 0.001


def test_min_matches_rejects_bad_probabilities():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        min_matches([1.5])
    with pytest.raises(ValueError, match="alpha"):
        min_matches([0.5], alpha=0)


def _result(now: datetime, **statuses: str) -> dict:
    checks = {"live": "pass", "ready": "pass", "model:tiny": "pass", "infer:tiny": "pass", "metrics": "pass"}
    checks |= {"database": "pass"} | {k.replace("_", ":"): v for k, v in statuses.items()}
    return {
        "url": "http://api:8000",
        "started_at": (now - timedelta(seconds=3)).isoformat(),
        "finished_at": now.isoformat(),
        "checks": [{"name": n, "status": s, "seconds": 0.1, "detail": f"{n} {s}"} for n, s in checks.items()],
    }


def test_assess_result_needs_every_required_check_recent_and_passed():
    now = datetime.now(UTC)
    passed, reason, summary = assess_result(_result(now), now)
    assert passed and reason == "smoke run passed: 6 checks against http://api:8000"
    assert summary["url"] == "http://api:8000" and [c["name"] for c in summary["checks"]][0] == "live"
    assert assess_result(_result(now, database="fail"), now)[:2] == (False, "the smoke run failed: database")
    skipped = assess_result(_result(now, database="skip"), now)
    assert not skipped[0] and "database" in skipped[1] and "--api-key" in skipped[1]
    no_model = assess_result(_result(now, infer_tiny="skip"), now)
    assert not no_model[0] and "of a model" in no_model[1]
    stale = assess_result(_result(now - timedelta(hours=2)), now)
    assert not stale[0] and "run it again" in stale[1]
    forged = _result(now, metrics="fail") | {"ok": True}
    assert assess_result(forged, now)[0] is False  # `ok` is recomputed from the checks


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"checks": []}, "1 to 500 checks"),
        ({"checks": [{"name": "live", "status": "maybe"}]}, "pass, fail or skip"),
        ({"finished_at": "2026-01-01T00:00:00"}, "no time zone"),
        ({"started_at": "yesterday"}, "not an ISO 8601 time"),
        ({"finished_at": "2999-01-01T00:00:00+00:00"}, "in the future"),
    ],
)
def test_assess_result_rejects_malformed_results(change, message):
    now = datetime.now(UTC)
    with pytest.raises(SmokeResultError, match=message):
        assess_result(_result(now) | change, now)
    with pytest.raises(SmokeResultError, match="JSON object"):
        assess_result([], now)
