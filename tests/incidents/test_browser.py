"""The console in headless Chromium against a real server and a real Alertmanager.

Alertmanager delivers its webhook to the server (bearer: an ``alerts`` key), which opens the incident; the page
shows the models, classifies an uploaded image, and acknowledges the incident with a silence that Alertmanager then
holds; the public status page then shows the incident's title and public update and none of its internal notes.
Chromium is Debian's (`/usr/bin/chromium`), driven by Playwright's Python package: no browser download.
The test fails, never skips, when either is missing, and says how to install it.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from spikeformer.store import ApiKeyStore, Database
from support import free_port, start_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_tools():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium with `apt-get install -y chromium` (make test-deps)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the Playwright package is missing: `.venv/bin/pip install -e '.[dev]'` (no browser download needed)"
        )
    return sync_playwright


def _png() -> bytes:
    pixels = np.random.default_rng(7).integers(0, 256, size=(28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _wait(predicate, what: str, timeout_s: float = 30.0):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _status_page_shows_public_entries_only(browser, url: str, incident: dict, admin_key: str) -> None:
    admin = {"Authorization": f"Bearer {admin_key}"}
    iid = incident["id"]
    internal = "Internal: replica api-0 at 10.0.3.7 holds a stale lock"
    for path, body in (("events", {"message": internal}), ("updates", {"message": "We are restarting the API"})):
        httpx.post(f"{url}/v1/incidents/{iid}/{path}", json=body, headers=admin, timeout=5).raise_for_status()
    page = browser.new_page()  # a new context: no key in its storage
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(f"{url}/status")
    card = page.locator(f'[data-testid=incident][data-incident="{iid}"]')
    card.wait_for(timeout=10_000)
    assert incident["title"] in card.inner_text() and "SEV-1" in card.inner_text()
    assert "We are restarting the API" in card.locator("[data-testid=public-update]").inner_text()
    text = page.locator("body").inner_text()
    assert internal not in text and "10.0.3.7" not in page.content()
    assert page.locator("[data-testid=bar]").count() == 90
    assert page.locator('[data-testid=component][data-component="model:tiny"]').get_attribute("data-state") == (
        "operational"
    )
    assert requested[0] == f"{url}/status" and errors == []
    assert all(r.startswith(f"{url}/") for r in requested), requested  # no external assets


@pytest.fixture
def server(repository, tmp_path):
    """A real `spikeformer serve` process with keys, and the port its Alertmanager will listen on."""
    db_url = f"sqlite:///{tmp_path / 'console.db'}"
    database = Database(db_url)
    database.upgrade()
    with database.session() as s:
        admin, _ = ApiKeyStore(s).create("console", ["admin"])
        alerts, _ = ApiKeyStore(s).create("alertmanager", ["alerts"])
    database.dispose()
    am_port = free_port()
    proc, url = start_server(repository, db_url, alertmanager_url=f"http://127.0.0.1:{am_port}")
    yield {"url": url, "admin": admin, "alerts": alerts, "am_port": am_port}
    proc.kill()
    proc.wait()


def test_console_shows_models_classifies_and_acknowledges_a_webhook_incident(server, start_alertmanager):
    sync_playwright = _browser_tools()
    url = server["url"]
    am = start_alertmanager(f"{url}/v1/alertmanager/webhook", server["alerts"], port=server["am_port"])
    am.post_alerts([{"labels": {"alertname": "SpikeformerApiDown", "sev": "SEV-1", "service": "spikeformer-api"},
                     "annotations": {"summary": "The API answers no request"}}])  # fmt: skip
    incidents = _wait(
        lambda: httpx.get(f"{url}/v1/incidents", timeout=5).json()["incidents"], "the webhook to open an incident"
    )
    (incident,) = incidents
    assert incident["sev"] == "SEV-1" and incident["source"] == "alertmanager"
    assert incident["title"] == "The API answers no request"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}/console")

            # a model and its integrity status
            row = page.locator('[data-testid=models] tr[data-model="tiny"][data-version="2"]')
            row.wait_for(timeout=15_000)
            assert "READY" in row.inner_text() and "verified" in row.inner_text()
            corrupt = page.locator('[data-testid=models] tr[data-model="tiny"][data-version="3"]').inner_text()
            assert "FAILED" in corrupt and "integrity" in corrupt

            # try a model: upload, classify, raster and energy
            page.set_input_files("#try-file", files=[{"name": "shirt.png", "mimeType": "image/png", "buffer": _png()}])
            page.click("[data-testid=try-run]")
            predicted = page.locator("[data-testid=predicted-class]")
            predicted.wait_for(timeout=30_000)
            assert (
                predicted.inner_text()
                in httpx.get(f"{url}/v2/models/tiny", timeout=5).json()["parameters"]["class_names"]
            )
            assert page.locator("#rasters canvas").count() >= 1
            assert page.locator("[data-testid=try-energy] tbody tr").count() == 4
            assert page.locator("[data-testid=firing-rates] li").count() >= 1

            # acknowledge the incident (with a silence) with the admin key
            assert page.locator("[data-testid=ack]").is_disabled()  # read only without a key
            page.fill("[data-testid=api-key]", server["admin"])
            page.click("[data-testid=save-key]")
            page.locator(f'[data-testid=incidents] tr[data-incident="{incident["id"]}"]').click()
            page.locator("[data-testid=timeline] li").first.wait_for(timeout=10_000)
            page.check("#ack-silence")
            page.click("[data-testid=ack]")
            page.locator(
                f'[data-testid=incidents] tr[data-incident="{incident["id"]}"][data-status="acknowledged"]'
            ).wait_for(timeout=10_000)
            assert "acknowledged" in page.locator("[data-testid=status]").inner_text()
            assert page.evaluate("sessionStorage.getItem('spikeformer.console.key')") == server["admin"]
            assert errors == []

            # the public status page, without a key: the incident's title and public update, never internal notes
            _status_page_shows_public_entries_only(browser, url, incident, server["admin"])
        finally:
            browser.close()

    acked = httpx.get(f"{url}/v1/incidents/{incident['id']}", headers={"Authorization": f"Bearer {server['admin']}"})
    assert acked.json()["status"] == "acknowledged"
    (silence,) = am.silences()
    assert {m["name"]: m["value"] for m in silence["matchers"]} == {"alertname": "SpikeformerApiDown"}
    assert silence["status"]["state"] == "active"
