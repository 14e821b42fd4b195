"""The incidents package's public face: errors carry their HTTP status and exit code, old import paths warn and
forward, the URLs come from the settings, and the API answers each error with the status it carries."""

from __future__ import annotations

import importlib
import sys

import pytest

import spikeformer.ops.incidents as incidents
from spikeformer.ops.incidents import (
    IncidentConflictError,
    IncidentError,
    IncidentInputError,
    IncidentNotFoundError,
    IncidentService,
)
from spikeformer.serve.services import incident_watcher
from spikeformer.store import StoreError


@pytest.mark.parametrize(
    ("error", "http_status", "exit_code"),
    [
        (IncidentError, 400, 2),
        (IncidentInputError, 400, 2),
        (IncidentNotFoundError, 404, 1),
        (IncidentConflictError, 409, 2),
    ],
)
def test_errors_carry_their_http_status_and_exit_code(error, http_status, exit_code):
    err = error("what was wrong")
    assert (err.http_status, err.exit_code) == (http_status, exit_code)
    assert isinstance(err, IncidentError)


def test_an_input_error_is_also_a_value_error():
    assert issubclass(IncidentInputError, ValueError)
    assert not issubclass(IncidentConflictError, ValueError)


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        (
            "spikeformer.ops.incident_common",
            "spikeformer.ops.incidents.views",
            ["format_duration", "incident_view", "targets", "Targets", "EVENT_KINDS", "POSTMORTEM_DUE"],
        ),
        (
            "spikeformer.ops.incident_common",
            "spikeformer.ops.incidents.errors",
            ["IncidentError", "IncidentNotFoundError"],
        ),
        ("spikeformer.ops.incident_common", "spikeformer.ops.incidents.service", ["ALERTMANAGER_URL_ENV"]),
        (
            "spikeformer.ops.incident_alertmanager",
            "spikeformer.ops.incidents.alertmanager",
            ["parse_webhook", "create_silence", "expire_silence", "group_hash", "AlertGroup"],
        ),
        ("spikeformer.ops.incident_messages", "spikeformer.ops.incidents.messages", ["render_message", "post_to_chat"]),
        ("spikeformer.ops.incident_postmortem", "spikeformer.ops.incidents.postmortem", ["render_postmortem"]),
    ],
)
def test_old_modules_warn_and_forward_the_same_objects(old, new, names):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to spikeformer.ops.incidents"):
        shim = importlib.import_module(old)
    target = importlib.import_module(new)
    for name in names:
        assert getattr(shim, name) is getattr(target, name), name
        assert name in shim.__all__


def test_the_package_imports_without_warning(recwarn):
    importlib.reload(incidents)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
    for name in incidents.__all__:
        assert hasattr(incidents, name), name


def test_the_watcher_names_moved_out_of_the_routes_module():
    from spikeformer.serve.api import incidents as routes

    with pytest.warns(DeprecationWarning, match="moved to spikeformer.serve.services.incident_watcher"):
        assert routes.watch_incidents is incident_watcher.watch_incidents
    with pytest.warns(DeprecationWarning):
        assert routes.INCIDENT_METRICS_INTERVAL_S == incident_watcher.INCIDENT_METRICS_INTERVAL_S
    with pytest.raises(AttributeError):
        routes.no_such_name  # noqa: B018


def test_urls_come_from_the_settings_each_time_and_the_constructor_wins(db, monkeypatch):
    svc = IncidentService(db)
    monkeypatch.setenv("SPIKEFORMER_ALERTMANAGER_URL", "http://am.example:9093/")
    monkeypatch.setenv("SPIKEFORMER_CHAT_WEBHOOK_URL", "https://chat.example/hook")
    assert svc.alertmanager_url() == "http://am.example:9093"
    assert svc.chat_webhook_url() == "https://chat.example/hook"
    monkeypatch.setenv("SPIKEFORMER_ALERTMANAGER_URL", "http://other:9093")
    assert svc.alertmanager_url() == "http://other:9093"
    assert svc.alertmanager_url("http://given:1") == "http://given:1"
    pinned = IncidentService(db, alertmanager_url="http://pinned:9093", chat_webhook_url="http://pinned/chat")
    assert pinned.alertmanager_url() == "http://pinned:9093"
    assert pinned.chat_webhook_url() == "http://pinned/chat"
    monkeypatch.delenv("SPIKEFORMER_CHAT_WEBHOOK_URL")
    with pytest.raises(IncidentInputError, match="set SPIKEFORMER_CHAT_WEBHOOK_URL"):
        svc.chat_webhook_url()


def test_the_api_answers_each_error_with_its_status(service):
    assert service.get("/v1/incidents/999999").status_code == 404
    iid = service.post("/v1/incidents", {"title": "Outage", "sev": "SEV-3", "author": "alice"}).json()["id"]
    r = service.post(f"/v1/incidents/{iid}/close", {"force": True, "reason": "x"})
    assert r.status_code == 409 and "it is open" in r.json()["error"]
    r = service.get("/v1/incidents", params={"status": "sleeping"})
    assert r.status_code == 400 and "unknown incident status" in r.json()["error"]


def test_a_database_that_is_down_is_answered_503(service, monkeypatch):
    def down(*_args, **_kwargs):
        raise StoreError("connection refused by db.internal:5432")

    monkeypatch.setattr(IncidentService, "list_incidents", down)
    r = service.get("/v1/incidents")
    assert r.status_code == 503 and r.headers["retry-after"]
    assert "the database is unavailable (connection refused" in r.json()["error"]
