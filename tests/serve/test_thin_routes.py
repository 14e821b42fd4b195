"""Routes over services: the console and ``/v1/classify`` share one decode of the upload, and the names that moved
out of the route modules and ``app.py`` still import, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import io

import numpy as np
import pytest
from PIL import Image

from spikeformer.serve import middleware
from spikeformer.serve.services import console as console_service
from spikeformer.serve.services import status as status_service
from spikeformer.serve.services import status_page


def _png(seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(28, 28)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_the_console_decodes_the_upload_once_and_answers_like_classify(service, monkeypatch):
    client, _ = service
    opened: list[object] = []
    open_image = Image.open

    def counting(fp, *args, **kwargs):
        opened.append(fp)
        return open_image(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)  # every decode of an upload opens it with PIL
    image = _png()
    tried = client.post("/v1/console/try", files={"file": ("x.png", image, "image/png")}, data={"model": "tiny"})
    assert tried.status_code == 200, tried.text
    assert len(opened) == 1
    classified = client.post("/v1/classify", files={"file": ("x.png", image, "image/png")}, data={"model": "tiny"})
    assert classified.status_code == 200, classified.text
    prediction, answer = tried.json()["prediction"], classified.json()
    for key in ("model_name", "model_version", "class_index", "class_name", "probabilities", "original_size"):
        assert prediction[key] == answer[key], key
    assert len(tried.json()["energy"]) == len(console_service.TRY_HARDWARE)


@pytest.mark.parametrize(
    ("module", "name", "target"),
    [
        ("spikeformer.serve.app", "InflightLimit", middleware.InflightLimit),
        ("spikeformer.serve.app", "BodySizeLimit", middleware.BodySizeLimit),
        ("spikeformer.serve.api.status", "build_status", status_service.build_status),
        ("spikeformer.serve.api.status", "workers_state", status_service.workers_state),
        ("spikeformer.serve.api.status", "HISTORY_DAYS", status_service.HISTORY_DAYS),
        ("spikeformer.serve.api.status", "render_status_html", status_page.render_status_html),
        ("spikeformer.serve.api.console", "TRY_HARDWARE", console_service.TRY_HARDWARE),
    ],
)
def test_moved_names_warn_and_forward(module, name, target):
    old = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"{name} moved to"):
        assert getattr(old, name) is target


def test_moved_upload_helpers_warn_and_forward():
    classify = importlib.import_module("spikeformer.serve.api.classify")
    deps = importlib.import_module("spikeformer.serve.api.deps")
    with pytest.warns(DeprecationWarning, match="read_upload moved to"):
        assert classify.read_upload is deps.read_upload
    with pytest.warns(DeprecationWarning, match="default_model moved to"):
        default_model = classify.default_model

    class Inference:
        @staticmethod
        def default_model(model):
            return model or "first"

    class State:
        inference = Inference

    assert default_model(State, None) == "first" and default_model(State, "tiny") == "tiny"
