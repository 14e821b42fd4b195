"""Every endpoint through a browser-free client, against a real (SQLite) database."""

import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from spikeformer.serve.app import create_app
from spikeformer.store import ApiKeyStore, Database, InferenceRecordStore
from support import make_settings


def _images(n=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28)).astype(np.uint8)


def _infer_body(images, nested=True, **kw):
    data = images.tolist() if nested else images.flatten().tolist()
    return {"inputs": [{"name": "images", "shape": list(images.shape), "datatype": "UINT8", "data": data}], **kw}


def test_health_and_metadata(service):
    client, _ = service
    assert client.get("/v2/health/live").status_code == 200
    r = client.get("/v2/health/ready")
    assert r.status_code == 200 and r.json()["database"] == "ok"
    assert client.get("/v2").json()["name"] == "spikeformer"
    meta = client.get("/v2/models/tiny").json()
    assert meta["versions"] == ["1", "2", "3"]
    assert meta["inputs"][0]["shape"] == [-1, 1, 28, 28]
    assert client.get("/v2/models/tiny/versions/1").json()["parameters"]["state"] == "READY"


def test_corrupt_version_is_not_ready_while_others_serve(service):
    client, _ = service
    r = client.get("/v2/models/tiny/versions/3/ready")
    assert r.status_code == 400 and "sha256" in r.json()["reason"]
    assert client.get("/v2/models/tiny/versions/2/ready").status_code == 200
    assert client.get("/v2/models/tiny/ready").status_code == 200
    index = {e["version"]: e for e in client.post("/v2/repository/index").json()}
    assert index["3"]["state"] == "FAILED" and index["1"]["state"] == "READY"
    metrics = client.get("/metrics").text
    assert 'spikeformer_model_ready{model="tiny",version="3"} 0.0' in metrics
    assert 'spikeformer_model_load_failures_total{model="tiny",reason="integrity",version="3"}' in metrics
    r = client.post("/v2/models/tiny/versions/3/infer", json=_infer_body(_images()))
    assert r.status_code == 503 and "not ready" in r.json()["error"]


def test_infer_nested_flat_and_fp32_agree(service):
    client, _ = service
    imgs = _images(3)
    a = client.post("/v2/models/tiny/infer", json=_infer_body(imgs, id="req-1"))
    assert a.status_code == 200, a.text
    body = a.json()
    assert body["id"] == "req-1" and body["model_name"] == "tiny" and body["model_version"] == "2"
    logits = {o["name"]: o for o in body["outputs"]}["logits"]
    assert logits["shape"] == [3, 10] and len(logits["data"]) == 30
    p = body["parameters"]
    assert p["backend"] == "cpu-fp32" and len(p["spikes"]) == 3 and p["spikes_total"] == sum(p["spikes"])
    b = client.post(
        "/v2/models/tiny/versions/2/infer", json=_infer_body(imgs, nested=False, outputs=[{"name": "class"}])
    ).json()
    assert [o["name"] for o in b["outputs"]] == ["class"]
    assert b["outputs"][0]["data"] == np.argmax(np.array(logits["data"]).reshape(3, 10), 1).tolist()
    fp = ((imgs[:, None] / 255.0 - 0.2860) / 0.3530).astype(np.float32)
    c = client.post(
        "/v2/models/tiny/infer",
        json={"inputs": [{"name": "x", "shape": [3, 1, 28, 28], "datatype": "FP32", "data": fp.tolist()}]},
    ).json()
    got = {o["name"]: o for o in c["outputs"]}["logits"]["data"]
    assert np.allclose(got, logits["data"], atol=1e-4)


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"inputs": []}, "exactly one"),
        ({"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "FP16", "data": [0] * 784}]}, "accepted: UINT8"),
        ({"inputs": [{"name": "x", "shape": [1, 3, 28, 28], "datatype": "UINT8", "data": [0] * 2352}]}, "does not fit"),
        ({"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "UINT8", "data": [0] * 700}]}, "needs 784"),
        ({"inputs": [{"name": "x", "shape": [2, 28, 28], "datatype": "UINT8", "data": [[0], [1, 2]]}]}, "rectangular"),
        ({"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "UINT8", "data": [300] * 784}]}, "0 to 255"),
        ({"inputs": [{"name": "x", "shape": [28, 28], "datatype": "UINT8", "data": [0] * 784}]}, "rank 2"),
        (
            {
                "inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "UINT8", "data": [0] * 784}],
                "outputs": [{"name": "probs"}],
            },
            "unknown output",
        ),
        ([1, 2, 3], "JSON object"),
    ],
)
def test_malformed_requests_are_400_with_a_message(service, body, needle):
    client, _ = service
    r = client.post("/v2/models/tiny/infer", json=body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


def test_not_json_unknown_model_and_too_large(service):
    client, settings = service
    r = client.post("/v2/models/tiny/infer", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = client.post("/v2/models/nope/infer", json=_infer_body(_images()))
    assert r.status_code == 404 and "tiny" in r.json()["error"]
    r = client.post("/v2/models/tiny/infer", content=b"x" * (settings.max_body_bytes + 1))
    assert r.status_code == 413


def test_classify_png_and_bad_upload(service):
    client, _ = service
    buf = io.BytesIO()
    Image.fromarray(_images(1)[0]).resize((56, 56)).save(buf, format="PNG")
    r = client.post("/v1/classify", files={"file": ("x.png", buf.getvalue(), "image/png")}, data={"model": "tiny"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["class_name"] in body["probabilities"] and body["original_size"] == [56, 56]
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3
    r = client.post("/v1/classify", files={"file": ("x.png", b"not an image", "image/png")})
    assert r.status_code == 400 and "PNG or JPEG" in r.json()["error"]


def test_records_reach_the_database(service, tmp_path):
    client, settings = service
    for _ in range(3):
        assert client.post("/v2/models/tiny/infer", json=_infer_body(_images(1))).status_code == 200
    db = Database(settings.database_url)
    deadline = time.time() + 5
    while time.time() < deadline:
        with db.session() as s:
            n = InferenceRecordStore(s).count()
        if n >= 3:
            break
        time.sleep(0.1)
    assert n >= 3
    with db.session() as s:
        rec = InferenceRecordStore(s).list_recent(limit=1)[0]
    assert rec.model == "tiny" and rec.status == "ok" and rec.spikes is not None and rec.latency_ms > 0


def test_admin_endpoints_need_admin_key_and_maintenance_mode(service):
    client, settings = service
    assert client.post("/v1/admin/maintenance", json={"enabled": True}).status_code == 401
    with Database(settings.database_url).session() as s:
        admin, _ = ApiKeyStore(s).create("ops", ["admin"])
        infer, _ = ApiKeyStore(s).create("app", ["infer"])
    r = client.post(
        "/v1/admin/maintenance",
        json={"enabled": True, "message": "upgrading"},
        headers={"Authorization": f"Bearer {infer}"},
    )
    assert r.status_code == 403
    r = client.post(
        "/v1/admin/maintenance",
        json={"enabled": True, "message": "upgrading"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 200
    r = client.post("/v2/models/tiny/infer", json=_infer_body(_images()))
    assert r.status_code == 503 and "upgrading" in r.json()["error"] and r.headers["Retry-After"] == "1"
    assert client.get("/v2/health/live").status_code == 200
    client.post("/v1/admin/maintenance", json={"enabled": False}, headers={"X-API-Key": admin})
    assert client.post("/v2/models/tiny/infer", json=_infer_body(_images())).status_code == 200


def test_unload_rollback_and_reload(service):
    client, settings = service
    with Database(settings.database_url).session() as s:
        admin, _ = ApiKeyStore(s).create("ops", ["admin"])
    h = {"Authorization": f"Bearer {admin}"}
    r = client.post("/v1/admin/models/tiny/rollback", headers=h)
    assert r.status_code == 200 and r.json()["active_version"] == "1"
    assert client.post("/v2/models/tiny/infer", json=_infer_body(_images())).json()["model_version"] == "1"
    assert client.post("/v2/repository/models/tiny/unload", headers=h).json()["unloaded"] == ["1", "2", "3"]
    assert client.get("/v2/health/ready").status_code == 503
    versions = client.post("/v2/repository/models/tiny/load", headers=h).json()["versions"]
    assert [v["state"] for v in versions] == ["READY", "READY", "FAILED"]
    assert client.get("/v2/health/ready").status_code == 200


def test_timeout_is_504(repository, tmp_path):
    settings = make_settings(repository, f"sqlite:///{tmp_path / 'x.db'}", request_timeout_s=1e-6)
    with TestClient(create_app(settings)) as client:
        r = client.post("/v2/models/tiny/infer", json=_infer_body(_images(4)))
        assert r.status_code == 504 and "within" in r.json()["error"]


def test_openapi_page(service):
    client, _ = service
    spec = client.get("/openapi.json").json()
    assert "/v2/models/{name}/infer" in spec["paths"] and client.get("/docs").status_code == 200


def _oip_raw(data: bytes) -> bytes:
    """A UINT8 request for one 28x28 image whose ``data`` is the raw JSON ``data``."""
    return b'{"inputs": [{"name": "x", "shape": [1, 28, 28], "datatype": "UINT8", "data": ' + data + b"]}]}"


_ZEROS = b", 0" * 783
_UNFIT_JSON = {
    "401-digit integer": (_oip_raw(b"[" + b"9" * 401 + _ZEROS), "at most 19 digits"),
    "5,000-digit integer": (_oip_raw(b"[" + b"9" * 5000 + _ZEROS), "at most 19 digits"),
    "nested 100,000 deep": (b"[" * 100_000 + b"]" * 100_000, "at most 32 levels"),
    "data nested 100,000 deep": (_oip_raw(b"[" * 100_000 + b"]" * 99_999), "at most 32 levels"),
    "nested 40 deep": (b'{"id": ' + b"[" * 40 + b"]" * 40 + b"}", "41 levels deep; accepted: at most 32"),
    "strings in data": (_oip_raw(b'["1"' + _ZEROS), "JSON numbers only; got strings"),
    "booleans in data": (_oip_raw(b"[true" + _ZEROS), "JSON numbers only; got booleans"),
}


@pytest.mark.security
@pytest.mark.parametrize("case", list(_UNFIT_JSON))
def test_unfit_json_is_a_400_with_a_message(service, case):
    client, _ = service
    raw, needle = _UNFIT_JSON[case]
    for path in ("/v2/models/tiny/infer", "/v1/jobs"):
        if path == "/v1/jobs" and b"inputs" in raw:
            continue  # the tensor checks are the inference request's
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        assert needle in r.json()["error"], r.json()["error"]


def test_long_strings_and_floats_are_not_integers(service):
    client, _ = service
    data = b"[" + b"1.00000000000000000000000000001" + _ZEROS
    body = _oip_raw(data)[:-1] + b', "id": "' + b"1" * 100 + b'[[[[[["}'
    r = client.post("/v2/models/tiny/infer", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "1" * 100 + "[[[[[["


@pytest.fixture
def live_server(repository, tmp_path):
    """The service under uvicorn in a thread: ``(host, port)`` of a real HTTP/1.1 server (keep-alive, as deployed)."""
    import threading

    import uvicorn

    from support import free_port

    settings = make_settings(repository, f"sqlite:///{tmp_path / 'live.db'}")
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started and thread.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield config.host, config.port
    server.should_exit = True
    thread.join(30)


def _exchange(sock, reader, path: str, body: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 POST on an open connection; its status and body (the connection is left open)."""
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    status_line = reader.readline()
    assert status_line, f"the server closed the connection instead of answering {path}"
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    assert headers.get("connection", "").lower() != "close", headers
    return int(status_line.split()[1]), reader.read(int(headers["content-length"]))


@pytest.mark.security
def test_unfit_json_keeps_the_connection_open(live_server):
    import json
    import socket

    with socket.create_connection(live_server, timeout=30) as sock, sock.makefile("rb") as reader:
        for case in ("401-digit integer", "5,000-digit integer", "nested 100,000 deep", "booleans in data"):
            status, body = _exchange(sock, reader, "/v2/models/tiny/infer", _UNFIT_JSON[case][0])
            assert status == 400 and _UNFIT_JSON[case][1] in json.loads(body)["error"], (case, status, body[:300])
        # the same connection still serves
        status, body = _exchange(sock, reader, "/v2/models/tiny/infer", json.dumps(_infer_body(_images(1))).encode())
        assert status == 200, body


@pytest.mark.security
@pytest.mark.parametrize(
    "raw,refused",
    [
        (b"[12345678901234567890]", True),
        (b'{"a":\n-99999999999999999999}', True),
        (b"[1234567890123456789, -1234567890123456789]", False),
        (b"[1.12345678901234567890, 12345678901234567890.5, 1e-12345678901234567890]", False),
        (b'["12345678901234567890123", "]]]]"]', False),
        (b"[" * 33 + b"]" * 33, True),
        (b"[" * 32 + b"]" * 32, False),
        (b'["' + b"[" * 40 + b'\\"{{"]', False),
    ],
)
def test_parse_json_limits(raw, refused):
    from spikeformer.serve.api.deps import parse_json
    from spikeformer.serve.errors import ServiceError

    if refused:
        with pytest.raises(ServiceError) as e:
            parse_json(raw)
        assert e.value.status == 400 and "accepted: " in e.value.message
    else:
        parse_json(raw)
