"""The console is served with a Content-Security-Policy that allows its own assets only, and no answer redirects to a
host named by the request's ``Host`` header."""

from __future__ import annotations

import re

import pytest


@pytest.mark.security
def test_console_forbids_framing_sniffing_and_foreign_code(service):
    client, _ = service
    r = client.get("/console")
    assert r.status_code == 200
    csp = {d.split()[0]: d.split()[1:] for d in r.headers["content-security-policy"].split(";") if d.strip()}
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"] and r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    for directive in ("script-src", "style-src", "connect-src"):
        assert csp[directive] == ["'self'"], (directive, csp)  # no 'unsafe-inline', no other origin
    assert csp["base-uri"] == ["'none'"] and csp["form-action"] == ["'none'"]
    # what the page loads is allowed by that policy: its own assets only, nothing inline
    html = r.text
    assert not re.search(r"<script(?![^>]*\ssrc=)", html) and "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)
    for source in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert source.startswith("/console/assets/"), source
        asset = client.get(source)
        assert asset.status_code == 200 and asset.headers["x-content-type-options"] == "nosniff"
        assert asset.headers["content-security-policy"] == r.headers["content-security-policy"]


@pytest.mark.security
def test_the_console_script_sets_no_style_attribute(service):
    """``style-src 'self'`` blocks style attributes set from a script; the page sets styles through the CSSOM."""
    client, _ = service
    script = client.get("/console/assets/console.js").text
    assert "cssText" in script and not re.search(r"""setAttribute\(\s*["']style""", script)


@pytest.mark.security
@pytest.mark.parametrize("path", ["/status/", "/console/", "/v2/health/live/", "/metrics/"])
def test_no_redirect_is_built_from_the_host_header(service, path):
    client, _ = service
    r = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert r.status_code == 404, (r.status_code, r.headers)
    assert "location" not in r.headers and "evil.example" not in r.text
    assert "trailing slash" in r.json()["error"] and path.rstrip("/") in r.json()["error"]
