"""Shared by the tests of deploy/ and docs/runbooks/: paths, the metric names the service defines, the metric names
a PromQL expression uses, and the external tools (promtool, amtool, kubernetes-validate) with how to install them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
GRAFANA = DEPLOY / "grafana"
RUNBOOKS = ROOT / "docs" / "runbooks"
METRICS_PY = ROOT / "src" / "spikeformer" / "serve" / "metrics.py"

# Series Prometheus itself adds to every scrape; nothing else outside metrics.py may be used.
STANDARD_METRICS = frozenset({"up"})

# Where each external tool comes from (`make test` installs them; see the Makefile).
TOOLS = {
    "promtool": "the Debian package `prometheus` (apt-get install -y prometheus)",
    "amtool": "the Debian package `prometheus-alertmanager` (apt-get install -y prometheus-alertmanager)",
    "kubernetes-validate": "the PyPI package `kubernetes-validate` (.venv/bin/pip install kubernetes-validate)",
}

_DEFINITION = re.compile(r"\b(Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*[\"']([a-zA-Z_:][a-zA-Z0-9_:]*)[\"']")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless"}
    | {"inf", "nan", "atan2", "start", "end"}
)


@cache
def defined_metrics() -> dict[str, str]:
    """``{name: kind}`` of every metric defined in serve/metrics.py (``Counter("name", ...)`` and friends)."""
    text = METRICS_PY.read_text(encoding="utf-8")
    found = {name: kind for kind, name in _DEFINITION.findall(text)}
    if not found:
        raise AssertionError(f"no metric definitions found in {METRICS_PY}")
    return found


@cache
def exposed_series_names() -> frozenset[str]:
    """Every series name the service exposes: histograms as ``_bucket/_sum/_count``, counters with ``_total``."""
    names: set[str] = set()
    for name, kind in defined_metrics().items():
        if kind == "Histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "Summary":
            names |= {name, f"{name}_sum", f"{name}_count"}
        elif kind == "Counter":
            base = name.removesuffix("_total")
            names |= {f"{base}_total"}
        else:
            names.add(name)
    return frozenset(names)


def metric_names_in(expr: str) -> set[str]:
    """The metric (or recorded series) names a PromQL expression selects.

    Strings, label matchers ``{...}``, range/subquery brackets ``[...]``, grouping label lists ``by (...)`` and
    Grafana variables are removed first; of the identifiers left, functions (followed by ``(``) and keywords are not
    metric names.
    """
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', " ", expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


@cache
def recorded_series() -> frozenset[str]:
    """Names recorded by the recording rules of deploy/prometheus/rules.yml."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return frozenset(r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r)


def unknown_metrics(exprs: Iterable[str], allowed_extra: Iterable[str] = ()) -> dict[str, set[str]]:
    """``{expr: names}`` for the expressions that use a name neither in metrics.py nor standard nor allowed."""
    known = exposed_series_names() | STANDARD_METRICS | set(allowed_extra)
    bad = {}
    for expr in exprs:
        missing = metric_names_in(expr) - known
        if missing:
            bad[expr] = missing
    return bad


def require_tool(name: str) -> str:
    """The path of an external tool; fails (never skips) with how to install it when it is missing."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        raise AssertionError(f"`{name}` is not installed: it comes from {TOOLS[name]}; `make test` installs it")
    return found


def run_tool(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repository root and return the finished process (output captured as text)."""
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def load_yaml_documents(path: Path) -> list[dict]:
    """The non-empty YAML documents of a file."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


@cache
def alert_rules() -> tuple[dict, ...]:
    """Every alerting rule of deploy/prometheus/rules.yml."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return tuple(r for g in doc["groups"] for r in g["rules"] if "alert" in r)


def _command_name(info: object) -> str:
    name = getattr(info, "name", None)
    if name:
        return name
    callback = getattr(info, "callback", None)
    return callback.__name__.lower().replace("_", "-") if callback else ""


def cli_tree() -> dict[str, dict | None]:
    """The typer app's commands: ``{"serve": None, "db": {"upgrade": None}, ...}`` (None marks a command).

    Walks ``app.registered_commands`` and ``app.registered_groups`` of ``spikeformer.cli.app``.
    """
    from spikeformer.cli import app

    def walk(typer_app: object) -> dict[str, dict | None]:
        tree: dict[str, dict | None] = {}
        for info in typer_app.registered_commands:  # type: ignore[attr-defined]
            tree[_command_name(info)] = None
        for group in typer_app.registered_groups:  # type: ignore[attr-defined]
            sub = group.typer_instance
            name = group.name or (sub.info.name if sub is not None else None)
            if name and sub is not None:
                tree[name] = walk(sub)
        return tree

    return walk(app)
