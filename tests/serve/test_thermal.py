"""Thermal protection with an injected temperature source."""

import time

from spikeformer.serve.thermal import ThermalGuard


def test_guard_lowers_limits_near_slowdown_and_recovers_with_hysteresis():
    temps = [70.0]
    g = ThermalGuard(lambda: [("gpu0", temps[0], 89.0)], base_batch=32, base_capacity=256)
    g.update()
    assert not g.active and g.limits() == (32, 256)
    temps[0] = 84.5  # within 5 C of the slowdown threshold
    assert g.update() and g.active and g.limits() == (8, 64)
    temps[0] = 82.0  # cooler, but not 3 C below the start point yet
    assert not g.update() and g.active
    temps[0] = 80.5
    assert g.update() and not g.active


def test_no_readings_change_nothing_and_a_broken_sensor_is_harmless():
    g = ThermalGuard(lambda: [], 32, 256)
    assert not g.update() and not g.active

    def broken():
        raise OSError("sensor gone")

    g = ThermalGuard(broken, 32, 256)
    assert not g.update() and not g.active


def test_service_applies_protection_and_reports_it(service):
    client, _ = service
    state = client.app.state.svc
    state.settings.thermal_poll_interval_s = 0.05
    state.thermal.source = lambda: [("gpu0", 88.0, 89.0)]
    deadline = time.time() + 5
    while time.time() < deadline and not client.get("/v2/health/ready").json()["thermal_protection"]:
        time.sleep(0.05)
    assert client.get("/v2/health/ready").json()["thermal_protection"] is True
    batchers = list(state.inference.batchers.values())
    assert batchers and all(b.max_batch_size == 8 and b.capacity == 64 for b in batchers)
    text = client.get("/metrics").text
    assert "spikeformer_thermal_protection_active 1.0" in text and "spikeformer_batch_limit 8.0" in text
    imgs = [[0] * 784]
    r = client.post(
        "/v2/models/tiny/infer",
        json={"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "UINT8", "data": imgs}]},
    )
    assert r.status_code == 200  # still serving, with smaller batches
