"""The post-mortem draft is Markdown: text that comes from alerts (labels, annotations, group keys) cannot inject
HTML, links, images or code spans, or break out of a table cell."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.security

HTML = '<img src=x onerror="alert(1)">'
SCRIPT = "<script>alert(2)</script>"
LINK = "[click](javascript:alert(3))"


def test_postmortem_escapes_what_comes_from_alerts(svc, am):
    alert = am.alert(instance=f"api-0 {HTML}", name=f"Boom{SCRIPT}")
    alert["annotations"] = {"summary": f"down {SCRIPT} {LINK}"}
    payload = am.payload(group=f"G`{HTML}", alerts=[alert])
    payload["commonAnnotations"] = {"summary": f"Title {HTML}", "description": f"Described {SCRIPT} {LINK}"}
    iid = svc.handle_alertmanager(payload, notify=False)["incident_id"]
    svc.resolve(iid, "bob", root_cause=f"cause {HTML}", resolution=f"fix {LINK}")
    text = svc.postmortem(iid)

    assert "<img" not in text and "<script" not in text
    assert not re.search(r"(?<!\\)\]\(", text)  # no link or image: every `](` is escaped
    assert '&lt;img src=x onerror="alert(1)"&gt;' in text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert "\\[click\\](javascript:alert(3))" in text
    # the group key is escaped like the rest (a backtick in it opens no code span)
    group_line = next(line for line in text.splitlines() if line.startswith("- Source:"))
    assert "G\\`&lt;img src=x" in group_line and "`" not in group_line.replace("\\`", ""), group_line
    # the title, summary, alert and timeline lines are all escaped; the draft keeps its structure
    assert text.startswith(f"# Post-mortem (draft): incident #{iid}: Title &lt;img")
    assert "## Root cause\n\ncause &lt;img" in text
    assert "| BoomScript" not in text and "| Boom&lt;script&gt;alert(2)&lt;/script&gt; (instance=api-0 &lt;img" in text
