"""deploy/prometheus: promtool check and unit tests, and the conventions of every alert (labels, annotations,
severities from spikeformer.ops.severity, runbook pages, metric names defined by the service)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from deploy.deploy_support import (
    PROMETHEUS_CONFIG,
    ROOT,
    RULE_TESTS,
    RULES,
    alert_rules,
    exposed_series_names,
    metric_names_in,
    recorded_series,
    require_tool,
    run_tool,
    unknown_metrics,
)
from spikeformer.ops.severity import SEVERITIES, get_severity

SERVICES = {
    "spikeformer-api",
    "spikeformer-database",
    "spikeformer-worker",
    "spikeformer-hardware",
    "spikeformer-incidents",
}
RUNBOOK_SECTIONS = ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation")
ALERT_NAMES = [r["alert"] for r in alert_rules()]


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    result = run_tool([promtool, "check", "rules", str(RULES.relative_to(ROOT))])
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}\n{result.stderr}"


def test_promtool_check_config() -> None:
    promtool = require_tool("promtool")
    result = run_tool([promtool, "check", "config", str(PROMETHEUS_CONFIG.relative_to(ROOT))])
    assert result.returncode == 0, f"promtool check config failed:\n{result.stdout}\n{result.stderr}"


def test_promtool_rule_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    result = run_tool([promtool, "test", "rules", str(RULE_TESTS.relative_to(ROOT))], timeout=120)
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}\n{result.stderr}"


def test_alert_names_are_unique_camel_case_with_the_prefix() -> None:
    assert len(ALERT_NAMES) == len(set(ALERT_NAMES))
    for name in ALERT_NAMES:
        assert re.fullmatch(r"Spikeformer(?:[A-Z][a-z0-9]*)+", name), name


@pytest.mark.parametrize("rule", alert_rules(), ids=ALERT_NAMES)
def test_alert_labels_and_annotations(rule: dict[str, Any]) -> None:
    labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
    for key in ("severity", "sev", "service"):
        assert labels.get(key), f"{rule['alert']} has no `{key}` label"
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key), f"{rule['alert']} has no `{key}` annotation"
    sev = get_severity(labels["sev"])
    assert labels["sev"] == sev.name, "spell sev as SEV-N"
    assert labels["severity"] == sev.alert_severity, (
        f"{rule['alert']}: sev {sev.name} means severity {sev.alert_severity!r} (spikeformer.ops.severity)"
    )
    assert labels["service"] in SERVICES, f"{rule['alert']}: unknown service {labels['service']!r}"


@pytest.mark.parametrize("rule", alert_rules(), ids=ALERT_NAMES)
def test_runbook_page_exists_with_its_sections(rule: dict[str, Any]) -> None:
    url = rule["annotations"]["runbook_url"]
    assert url == f"docs/runbooks/{rule['alert']}.md"
    page = ROOT / url
    assert page.is_file(), f"{rule['alert']}: runbook page {url} is missing"
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"# {rule['alert']}"), f"{url} must start with '# {rule['alert']}'"
    for section in RUNBOOK_SECTIONS:
        assert re.search(rf"^{section}\s*$", text, re.M), f"{url} has no '{section}' section"
    assert rule["labels"]["sev"] in text, f"{url} must state the alert's severity"


def test_every_severity_has_an_alert() -> None:
    used = {r["labels"]["sev"] for r in alert_rules()}
    assert used == {s.name for s in SEVERITIES}


def test_every_expression_uses_only_metrics_the_service_defines() -> None:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    exprs = [r["expr"] for g in doc["groups"] for r in g["rules"]]
    bad = unknown_metrics(exprs, allowed_extra=recorded_series())
    assert not bad, f"expressions use metrics not defined in src/spikeformer/serve/metrics.py: {bad}"
    # A recorded series is only used by name when a rule records it; names without a colon are raw metrics.
    for expr in exprs:
        for name in metric_names_in(expr):
            assert (":" in name) == (name in recorded_series()), (expr, name)


def test_metric_name_parser() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (model, le) (rate(spikeformer_request_latency_seconds_bucket{model=~"a|b"}'
        '[10m] offset 1d))) > 1.5 * x:y:z and on () up{job="j"} == 1e3 unless label_replace(spikeformer_jobs, '
        '"a", "$1", "state", "(.*)") > bool 2'
    )
    assert metric_names_in(expr) == {"spikeformer_request_latency_seconds_bucket", "x:y:z", "up", "spikeformer_jobs"}
    assert "spikeformer_requests_total" in exposed_series_names()
    assert "spikeformer_request_latency_seconds_bucket" in exposed_series_names()
    assert "spikeformer_request_latency_seconds" not in exposed_series_names()
    assert unknown_metrics(["rate(spikeformer_no_such_metric[5m])"]) == {
        "rate(spikeformer_no_such_metric[5m])": {"spikeformer_no_such_metric"}
    }


def test_burn_rate_windows_and_slo() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    page = re.sub(r"\s+", " ", rules["SpikeformerErrorBudgetBurnPage"]["expr"])
    ticket = re.sub(r"\s+", " ", rules["SpikeformerErrorBudgetBurnTicket"]["expr"])
    for window, factor in (("1h", "14.4"), ("5m", "14.4"), ("6h", "6"), ("30m", "6")):
        assert f"ratio_rate{window} > ({factor} * 0.005)" in page, (window, factor)
    for window, factor in (("1d", "(3 * 0.005)"), ("2h", "(3 * 0.005)"), ("3d", "0.005"), ("6h", "0.005")):
        assert f"ratio_rate{window} > {factor}" in ticket, (window, factor)
    assert get_severity(rules["SpikeformerErrorBudgetBurnPage"]["labels"]["sev"]).routing == "page"
    assert get_severity(rules["SpikeformerErrorBudgetBurnTicket"]["labels"]["sev"]).routing == "ticket"
    assert "99.5 %" in RULES.read_text(encoding="utf-8")


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert doc["rule_files"] == ["rules.yml"]
    fires, quiet = set(), set()
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            assert case["alertname"] in ALERT_NAMES, f"tests.yml tests an unknown alert {case['alertname']}"
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert not set(ALERT_NAMES) - fires, f"alerts never shown firing: {sorted(set(ALERT_NAMES) - fires)}"
    assert not set(ALERT_NAMES) - quiet, f"alerts never shown quiet: {sorted(set(ALERT_NAMES) - quiet)}"


def test_scrape_job_matches_the_rules() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {c["job_name"] for c in config["scrape_configs"]}
    used = set(re.findall(r'up\{job="([^"]+)"', RULES.read_text(encoding="utf-8")))
    assert used and used <= jobs, (used, jobs)
    (target,) = [c for c in config["scrape_configs"] if c["job_name"] == "spikeformer-api"][0]["dns_sd_configs"]
    assert target["names"] == ["spikeformer-api-pods.spikeformer.svc.cluster.local"] and target["port"] == 8000
