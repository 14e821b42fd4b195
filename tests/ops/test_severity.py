"""The severity table: its values (from the runbook), lookup, escalation, and the runbook's copy of the table."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from spikeformer.ops import severity as sev_module
from spikeformer.ops.severity import SEVERITIES, Severity, escalate, get_severity, render_markdown_table

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "runbooks" / "incident-response.md"
TABLE_START = "<!-- severity-table:start -->"
TABLE_END = "<!-- severity-table:end -->"


def test_table_values_follow_the_runbook() -> None:
    assert [s.name for s in SEVERITIES] == ["SEV-1", "SEV-2", "SEV-3", "SEV-4"]
    assert [s.level for s in SEVERITIES] == [1, 2, 3, 4]
    assert [s.title for s in SEVERITIES] == ["Critical", "High", "Medium", "Low"]
    assert [s.response_minutes for s in SEVERITIES] == [15, 60, 240, 1440]
    assert [s.alert_severity for s in SEVERITIES] == ["critical", "critical", "warning", "info"]
    assert [s.routing for s in SEVERITIES] == ["page", "page", "ticket", "log"]
    assert SEVERITIES[0].definition == "Complete service outage or data loss"
    assert "All model inference endpoints down" in SEVERITIES[0].examples
    assert "Single hardware backend unavailable" in SEVERITIES[1].examples


def test_update_intervals_never_fall_due_before_acknowledgement_for_low_severities() -> None:
    # Paging incidents are updated every 30 min (the runbook's promise); SEV-3/4 once per response window.
    assert [s.update_interval_minutes for s in SEVERITIES] == [30, 30, 240, 1440]
    for s in SEVERITIES:
        if s.routing != "page":
            assert s.update_interval_minutes >= s.response_minutes
    assert SEVERITIES[1].response_time.total_seconds() == 3600
    assert SEVERITIES[0].update_interval.total_seconds() == 1800


def test_severity_is_frozen_and_examples_are_a_tuple() -> None:
    s = SEVERITIES[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.level = 2  # type: ignore[misc]
    assert all(isinstance(x.examples, tuple) and x.examples for x in SEVERITIES)
    assert hash(s) == hash(get_severity(1))
    assert str(s) == "SEV-1"


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("SEV-2", 2),
        ("sev2", 2),
        ("SEV2", 2),
        ("sev-2", 2),
        (" SEV-2 ", 2),
        ("SEV 3", 3),
        ("sev_4", 4),
        (2, 2),
        ("1", 1),
    ],
)
def test_get_severity_accepts_the_usual_spellings(value: str | int, level: int) -> None:
    got = get_severity(value)
    assert got.level == level and got is SEVERITIES[level - 1]


def test_get_severity_returns_a_severity_unchanged() -> None:
    assert get_severity(SEVERITIES[2]) is SEVERITIES[2]


@pytest.mark.parametrize("value", ["SEV-5", "SEV-0", 0, 5, "critical", "", "SEV-", "sev-1x", True, 2.0, None])
def test_get_severity_rejects_other_values_and_lists_the_accepted_ones(value: object) -> None:
    with pytest.raises(ValueError) as e:
        get_severity(value)  # type: ignore[arg-type]
    message = str(e.value)
    assert repr(value) in message
    for s in SEVERITIES:
        assert s.name in message


def test_escalate_returns_the_more_severe() -> None:
    assert escalate("SEV-3", 2).name == "SEV-2"
    assert escalate(1, "sev4").name == "SEV-1"
    assert escalate("SEV-3", "SEV-3") is SEVERITIES[2]
    assert escalate(SEVERITIES[3], SEVERITIES[1]) is SEVERITIES[1]
    with pytest.raises(ValueError):
        escalate("SEV-1", "SEV-9")


def test_render_markdown_table_has_one_row_per_severity() -> None:
    lines = render_markdown_table().splitlines()
    assert len(lines) == 2 + len(SEVERITIES)
    header_cells = lines[0].count("|")
    for line, s in zip(lines[2:], SEVERITIES, strict=True):
        assert line.count("|") == header_cells
        assert line.startswith(f"| {s.name} | {s.title} | {s.definition} |")
        assert s.routing in line and s.alert_severity in line
    assert "| 15 min | every 30 min |" in lines[2]
    assert "| 24 h | every 24 h |" in lines[5]


def test_runbook_table_matches_the_code() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    assert TABLE_START in text and TABLE_END in text, f"{RUNBOOK} must mark the table with {TABLE_START}/{TABLE_END}"
    block = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    assert block == render_markdown_table(), (
        "the severity table in docs/runbooks/incident-response.md differs from spikeformer.ops.severity; "
        "paste the output of `python -c 'from spikeformer.ops.severity import render_markdown_table as r; print(r())'`"
    )


def test_runbook_states_each_response_target() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    for s in SEVERITIES:
        assert re.search(rf"\b{s.name}\b", text)


def test_module_imports_nothing_from_spikeformer() -> None:
    tree = ast.parse(Path(sev_module.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        assert not any(n.split(".")[0] == "spikeformer" for n in names), names


def test_ops_package_never_imports_serve_or_cli() -> None:
    ops_dir = Path(sev_module.__file__).parent
    for path in ops_dir.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("spikeformer.serve", "spikeformer.cli")), (path, node.module)
            if isinstance(node, ast.Import):
                for a in node.names:
                    assert not a.name.startswith(("spikeformer.serve", "spikeformer.cli")), (path, a.name)


def test_severity_fields() -> None:
    names = [f.name for f in dataclasses.fields(Severity)]
    assert names == [
        "level",
        "name",
        "title",
        "definition",
        "response_minutes",
        "update_interval_minutes",
        "alert_severity",
        "routing",
        "examples",
    ]
