"""deploy/grafana: provisioning files and dashboards (valid dashboard JSON, queries on metrics the service defines)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.deploy_support import GRAFANA, metric_names_in, unknown_metrics

DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "spikeformer.yml"
# What each dashboard must show (the metrics behind it).
REQUIRED = {
    "service-overview.json": {
        "spikeformer_requests_total",
        "spikeformer_request_latency_seconds_bucket",
        "spikeformer_queue_depth",
        "spikeformer_batch_size_bucket",
    },
    "hardware.json": {
        "spikeformer_device_temperature_celsius",
        "spikeformer_device_slowdown_temperature_celsius",
        "spikeformer_device_power_watts",
        "spikeformer_energy_per_inference_joules_sum",
    },
    "model-behaviour.json": {"spikeformer_layer_firing_rate", "spikeformer_spikes_per_inference_bucket"},
}


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


@cache
def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in panels(dashboard) for t in p.get("targets", []) if "expr" in t]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", text.strip())
        if var.get("type") == "query":
            assert m, f"template variable {var['name']}: unexpected query {text!r}"
            found.append(m.group(1))
    return found


def datasource_uid() -> str:
    (ds,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert ds["type"] == "prometheus"
    return ds["uid"]


def test_provisioning_files() -> None:
    assert datasource_uid()
    (provider,) = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_the_three_dashboards_exist() -> None:
    assert {p.name for p in dashboard_files()} == set(REQUIRED)
    uids = [load(p)["uid"] for p in dashboard_files()]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_is_valid_dashboard_json(path: Path) -> None:
    d = load(path)
    assert isinstance(d.get("uid"), str) and 0 < len(d["uid"]) <= 40
    assert d.get("title") and isinstance(d.get("schemaVersion"), int)
    assert d["panels"], f"{path.name} has no panels"
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
    uid = datasource_uid()
    for p in panels(d):
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]), p.get("title")
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p.get("title")
        if p["type"] == "row":
            continue
        assert p.get("title") and p.get("targets"), f"{path.name}: panel {p.get('title')!r} has no targets"
        assert p["datasource"]["uid"] == uid, p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]
        for t in p["targets"]:
            assert t.get("expr", "").strip(), f"{path.name}: panel {p['title']!r} has a target without expr"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_queries_use_only_metrics_the_service_defines(path: Path) -> None:
    d = load(path)
    bad = unknown_metrics(exprs(d))
    assert not bad, f"{path.name} queries metrics not defined in src/spikeformer/serve/metrics.py: {bad}"
    used = set().union(*(metric_names_in(e) for e in exprs(d)))
    missing = REQUIRED[path.name] - used
    assert not missing, f"{path.name} does not show {sorted(missing)}"


def test_overview_shows_latency_quantiles() -> None:
    d = load(DASHBOARDS / "service-overview.json")
    text = "\n".join(exprs(d))
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(spikeformer_request_latency_seconds_bucket" in text, q
