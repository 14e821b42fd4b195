"""The console page and its JSON routes: hardware telemetry, stats from the registry, and "try a model"."""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image


def png(seed: int = 0, size: int = 28) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_console_page_is_self_contained(service):
    r = service.client.get("/console")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    # every script and stylesheet is served by the service itself: nothing from a CDN
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/console/assets/") for s in sources), sources
    for source in sources:
        asset = service.client.get(source)
        assert asset.status_code == 200 and asset.text
        assert "http://" not in asset.text and "https://" not in asset.text
    assert service.client.get("/console/assets/../app.py").status_code == 404
    assert "no console asset" in service.client.get("/console/assets/x.js").json()["error"]


def test_hardware_is_the_real_status(service):
    body = service.client.get("/v1/hardware").json()
    cpu = next(d for d in body["devices"] if d["backend"] == "cpu")
    assert cpu["available"] is True and cpu["memory_total_mb"] > 0
    from spikeformer.hardware import hardware_status

    assert [d["backend"] for d in body["devices"]] == [d["backend"] for d in hardware_status()["devices"]]


def test_stats_count_requests_from_the_registry(service):
    before = service.client.get("/v1/stats").json()
    r = service.client.post("/v1/classify", files={"file": ("x.png", png(), "image/png")})
    assert r.status_code == 200
    after = service.client.get("/v1/stats").json()
    assert after["requests"]["total"] == before["requests"]["total"] + 1
    assert after["requests"]["by_status"]["ok"] == before["requests"]["by_status"].get("ok", 0) + 1
    assert after["latency_seconds"]["count"] == before["latency_seconds"]["count"] + 1
    assert after["latency_seconds"]["buckets"][-1][0] == "+Inf"
    assert after["energy_joules"]["count"] == before["energy_joules"]["count"] + 1


def test_try_returns_prediction_firing_rates_raster_and_energy(service):
    r = service.client.post("/v1/console/try", files={"file": ("x.png", png(1), "image/png")}, data={"model": "tiny"})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = service.client.post("/v1/classify", files={"file": ("x.png", png(1), "image/png")}).json()
    assert body["prediction"]["class_name"] == expected["class_name"]
    assert body["prediction"]["model_version"] == "2"  # the newest ready version (3 is corrupt)
    assert body["timesteps"] == 2
    rates = body["firing_rates"]
    assert rates and all(0.0 <= f["rate"] <= 1.0 for f in rates)
    assert [e["hardware"] for e in body["energy"]] == ["cmos45nm", "loihi", "loihi2", "spinnaker2"]
    assert all(e["joules"] > 0 for e in body["energy"])
    assert any(e["assumed"] and e["notes"] for e in body["energy"])  # the assumptions are stated
    assert 1 <= len(body["raster"]) <= 4
    for layer in body["raster"]:
        assert len(layer["spikes"]) == body["timesteps"]
        assert all(len(row) == len(layer["indices"]) <= 64 for row in layer["spikes"])
        assert {v for row in layer["spikes"] for v in row} <= {0, 1}
        shown_rate = np.mean(layer["spikes"])
        assert abs(shown_rate - layer["firing_rate"]) <= 0.5  # a sample of the same layer


def test_try_rejects_what_is_not_an_image(service):
    r = service.client.post("/v1/console/try", files={"file": ("x.txt", b"hello", "text/plain")})
    assert r.status_code == 400 and "PNG or JPEG" in r.json()["error"]
    r = service.client.post("/v1/console/try", files={"file": ("x.png", png(), "image/png")}, data={"model": "nope"})
    assert r.status_code == 404 and "unknown model" in r.json()["error"]
