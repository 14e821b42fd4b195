"""deploy/alertmanager: amtool check-config, the routing tree per severity (amtool config routes test), the webhook
receivers and the inhibition of lower severities by SEV-1."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import yaml

from deploy.deploy_support import ALERTMANAGER, K8S, ROOT, alert_rules, load_yaml_documents, require_tool, run_tool
from spikeformer.ops.severity import SEVERITIES, Severity, get_severity

WEBHOOK = "http://spikeformer-api.spikeformer.svc:8000/v1/alertmanager/webhook"
CREDENTIALS = "/etc/alertmanager/secrets/spikeformer-alerts-key"
CONFIG = str(ALERTMANAGER.relative_to(ROOT))


@cache
def config() -> dict[str, Any]:
    return yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))


def route(**labels: str) -> list[str]:
    """The receivers amtool picks for an alert with these labels."""
    amtool = require_tool("amtool")
    args = [amtool, "config", "routes", "test", f"--config.file={CONFIG}", *(f"{k}={v}" for k, v in labels.items())]
    result = run_tool(args)
    assert result.returncode == 0, f"amtool config routes test failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip().split(",")


def test_amtool_check_config() -> None:
    amtool = require_tool("amtool")
    result = run_tool([amtool, "check-config", CONFIG])
    assert result.returncode == 0, f"amtool check-config failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("sev", SEVERITIES, ids=[s.name for s in SEVERITIES])
def test_each_severity_routes_to_its_receiver(sev: Severity) -> None:
    assert route(sev=sev.name, alertname="SpikeformerTest", service="spikeformer-api") == [sev.routing]


def test_an_alert_without_a_known_sev_becomes_a_ticket() -> None:
    assert route(alertname="SomethingElse") == ["ticket"]
    assert route(alertname="SomethingElse", sev="SEV-9") == ["ticket"]


@pytest.mark.parametrize("rule", alert_rules(), ids=[r["alert"] for r in alert_rules()])
def test_every_alert_rule_routes_by_its_sev(rule: dict[str, Any]) -> None:
    labels = {"alertname": rule["alert"], **rule["labels"]}
    assert route(**labels) == [get_severity(rule["labels"]["sev"]).routing]


def test_the_webhook_points_at_the_api_service() -> None:
    services = {
        d["metadata"]["name"]: d
        for p in (K8S / "base").glob("*.yaml")
        for d in load_yaml_documents(p)
        if d["kind"] == "Service"
    }
    host, port = WEBHOOK.removeprefix("http://").split("/", 1)[0].split(":")
    name, namespace = host.split(".")[:2]
    assert services[name]["metadata"]["namespace"] == namespace
    assert int(port) in {p["port"] for p in services[name]["spec"]["ports"]}


def test_grouping() -> None:
    assert config()["route"]["group_by"] == ["alertname", "service", "sev"]


def test_every_receiver_posts_to_the_incident_webhook_with_a_bearer_key() -> None:
    receivers = {r["name"]: r for r in config()["receivers"]}
    assert set(receivers) == {s.routing for s in SEVERITIES}
    for name, receiver in receivers.items():
        hooks = [w for w in receiver.get("webhook_configs", []) if w["url"] == WEBHOOK]
        assert len(hooks) == 1, f"receiver {name} must post to {WEBHOOK}"
        auth = hooks[0]["http_config"]["authorization"]
        assert auth == {"type": "Bearer", "credentials_file": CREDENTIALS}, name
        assert hooks[0]["send_resolved"] is True, f"{name}: incidents need the resolved notifications too"


def test_sev1_inhibits_lower_severities_of_the_same_service() -> None:
    (rule,) = config()["inhibit_rules"]
    assert rule["source_matchers"] == ['sev="SEV-1"']
    lower = "|".join(s.name for s in SEVERITIES if s.level > 1)
    assert rule["target_matchers"] == [f'sev=~"{lower}"']
    assert rule["equal"] == ["service"]
    # `equal` on a label that an alert lacks matches between alerts that both lack it: every rule must carry it.
    assert all(r["labels"].get("service") for r in alert_rules())


def test_no_v1_api_in_the_configuration() -> None:
    # Alertmanager removed /api/v1 in 0.27 (comments may say so; the configuration itself must not use it).
    assert "/api/v1" not in yaml.safe_dump(config())
