"""The request metrics take their labels only from the repository: clients cannot grow /metrics or /v1/stats."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from spikeformer.serve import metrics


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _infer_body() -> dict:
    return {"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "UINT8", "data": [0] * 784}]}


def _unknown_requests(client, seed: int, n: int) -> None:
    """``n`` requests of each kind naming a distinct 2,000-character unknown model or version."""
    png = _png()
    for i in range(n):
        name = f"{seed}-{i}-" + "m" * 2000
        r = client.post("/v1/classify", files={"file": ("x.png", png, "image/png")}, data={"model": name})
        assert r.status_code == 404, r.text
        r = client.post("/v1/classify", files={"file": ("x.png", png, "image/png")}, data={"version": name})
        assert r.status_code == 404, r.text
        assert client.post(f"/v2/models/{name[:200]}/infer", json=_infer_body()).status_code == 404
        assert client.post(f"/v2/models/tiny/versions/{name[:200]}/infer", json=_infer_body()).status_code == 404
        assert (
            client.post(f"/v2/models/{name[:100]}/versions/{name[:100]}/infer", json=_infer_body()).status_code == 404
        )


@pytest.mark.security
def test_unknown_models_and_versions_share_one_label(service):
    client, _ = service
    _unknown_requests(client, seed=0, n=1)  # the fixed "unknown" series exist from here on
    metrics_before = len(client.get("/metrics").text)
    stats_before = len(client.get("/v1/stats").text)
    _unknown_requests(client, seed=1, n=25)
    text = client.get("/metrics").text
    stats = client.get("/v1/stats").json()
    # 125 requests with distinct 2,000-character names: the counters change, no series is added
    assert len(text) - metrics_before < 500, len(text) - metrics_before
    assert len(client.get("/v1/stats").text) - stats_before < 100
    assert "mmmmmmmmmm" not in text and not any("mmmmmmmmmm" in m for m in stats["requests"]["by_model"])
    unknown = metrics.UNKNOWN_LABEL
    assert f'spikeformer_requests_total{{model="{unknown}",status="not_found",version="{unknown}"}}' in text
    assert f'spikeformer_requests_total{{model="{unknown}",status="not_found",version=""}}' in text
    assert f'spikeformer_requests_total{{model="tiny",status="not_found",version="{unknown}"}}' in text
    assert stats["requests"]["by_model"][unknown] >= 78


@pytest.mark.security
def test_known_models_keep_their_labels(service):
    client, _ = service
    assert client.post("/v2/models/tiny/infer", json=_infer_body()).status_code == 200
    assert client.post("/v2/models/tiny/versions/3/infer", json=_infer_body()).status_code == 503
    text = client.get("/metrics").text
    assert 'spikeformer_requests_total{model="tiny",status="ok",version="2"}' in text
    assert 'spikeformer_requests_total{model="tiny",status="unavailable",version="3"}' in text


def test_request_labels():
    known = {"tiny": ["1", "2"]}
    assert metrics.request_labels(known, "tiny", "2") == ("tiny", "2")
    assert metrics.request_labels(known, "tiny", None) == ("tiny", "")
    assert metrics.request_labels(known, "tiny", "9" * 50) == ("tiny", metrics.UNKNOWN_LABEL)
    assert metrics.request_labels(known, "x" * 50, "2") == (metrics.UNKNOWN_LABEL, metrics.UNKNOWN_LABEL)
    assert metrics.request_labels(known, "x", None) == (metrics.UNKNOWN_LABEL, "")


@pytest.mark.security
def test_a_huge_unknown_name_is_not_echoed_in_full(service):
    client, _ = service
    name = "m" * 1_000_000
    r = client.post(f"/v2/models/tiny/versions/{'9' * 5000}/infer", json=_infer_body())
    assert r.status_code == 404 and len(r.content) < 600 and "(5,000 characters)" in r.json()["error"]
    files = {"file": ("x.png", _png(), "image/png")}
    r = client.post("/v1/classify", files=files, data={"model": name})
    assert r.status_code == 404, r.text
    assert len(r.content) < 600 and "(1,000,000 characters)" in r.json()["error"]
