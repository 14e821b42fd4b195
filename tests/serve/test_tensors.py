"""Uploaded images are refused from their header before any decode, and OIP ``data`` holds JSON numbers only."""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from spikeformer.serve.errors import ServiceError
from spikeformer.serve.services import inference as inference_module
from spikeformer.serve.services.tensors import decode_image, parse_input_tensor

SHAPE = (1, 28, 28)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` grey pixels followed by a few bytes of image data: what a
    decompression bomb looks like before it is decoded (the test never needs the pixels)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")
    )


def image_bytes(fmt: str, size: tuple[int, int] = (28, 28)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros(size[::-1], dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def no_decode(monkeypatch):
    """Fails the test if any image is decoded (``ImageFile.load`` is where Pillow decodes pixels)."""
    calls = []

    def load(self):
        calls.append(self.size)
        raise AssertionError(f"an image of {self.size} was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


# ---------------------------------------------------------------------------------------------------------- images
@pytest.mark.security
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own warning above 89 M pixels
@pytest.mark.parametrize("size", [(9000, 9000), (20000, 20000), (100_000_000, 1)])
def test_too_many_pixels_are_refused_from_the_header(no_decode, size):
    with pytest.raises(ServiceError) as e:
        decode_image(png_header(*size), SHAPE, max_pixels=16_777_216)
    assert e.value.status == 413
    assert "pixels" in e.value.message and "16,777,216" in e.value.message, e.value.message
    assert no_decode == []


@pytest.mark.security
def test_the_pixel_limit_is_the_callers(no_decode):
    with pytest.raises(ServiceError) as e:
        decode_image(image_bytes("PNG", (101, 100)), SHAPE, max_pixels=10_000)
    assert e.value.status == 413 and "101x100" in e.value.message and "10,000" in e.value.message
    assert no_decode == []


@pytest.mark.security
@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "GIF", "WEBP"])
def test_other_formats_are_refused_without_a_decode(no_decode, fmt):
    with pytest.raises(ServiceError) as e:
        decode_image(image_bytes(fmt, (300, 300)), SHAPE, max_pixels=16_777_216)
    assert e.value.status == 400 and "PNG or JPEG" in e.value.message
    assert no_decode == []


@pytest.mark.security
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_images_within_the_limit_are_decoded_and_resized(fmt):
    x, original = decode_image(image_bytes(fmt, (56, 40)), SHAPE, max_pixels=56 * 40)
    assert x.shape == (1, 1, 28, 28) and x.dtype.is_floating_point is False and original == [56, 40]


@pytest.mark.security
def test_a_truncated_image_is_a_400():
    with pytest.raises(ServiceError) as e:
        decode_image(png_header(64, 64), SHAPE, max_pixels=16_777_216)
    assert e.value.status == 400 and "PNG or JPEG" in e.value.message


@pytest.mark.security
def test_classify_refuses_a_bomb_from_its_header(service, no_decode):
    client, settings = service
    errors = []
    for size in [(9000, 9000), (20000, 20000)]:
        r = client.post("/v1/classify", files={"file": ("x.png", png_header(*size), "image/png")})
        assert r.status_code == 413, r.text
        errors.append(r.json()["error"])
        assert f"at most {settings.max_image_pixels:,} pixels" in errors[-1]
    assert "9000x9000 = 81,000,000 pixels" in errors[0]
    r = client.post("/v1/console/try", files={"file": ("x.png", png_header(20000, 20000), "image/png")})
    assert r.status_code == 413, r.text
    r = client.post("/v1/classify", files={"file": ("x.tif", image_bytes("TIFF", (300, 300)), "image/tiff")})
    assert r.status_code == 400 and "PNG or JPEG" in r.json()["error"]
    assert no_decode == []


@pytest.mark.security
def test_images_are_decoded_once_off_the_event_loop(service, monkeypatch):
    client, _ = service
    calls = []
    real = inference_module.decode_image

    def spy(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        calls.append((threading.current_thread().name, on_loop))
        return real(*args, **kwargs)

    monkeypatch.setattr(inference_module, "decode_image", spy)
    png = image_bytes("PNG", (56, 56))
    assert client.post("/v1/classify", files={"file": ("x.png", png, "image/png")}).status_code == 200
    assert client.post("/v1/console/try", files={"file": ("x.png", png, "image/png")}).status_code == 200
    assert len(calls) == 2, calls  # once per request, the console's profile reuses the decoded input
    assert not any(on_loop for _, on_loop in calls), calls


# ---------------------------------------------------------------------------------------------------------- tensors
def _body(data, shape=(1, 2, 2), dtype="UINT8") -> dict:
    return {"inputs": [{"name": "x", "shape": list(shape), "datatype": dtype, "data": data}]}


@pytest.mark.security
@pytest.mark.parametrize(
    "data",
    [
        [["1", "2"], ["3", "4"]],
        [True, False, True, False],
        [1, 2, 3, True],
        [1.0, 2.0, None, 4.0],
        [1, 2, 3, {"a": 1}],
        [[1, 2], [3, [4]]],
    ],
)
def test_data_must_hold_numbers_only(data):
    for dtype in ("UINT8", "FP32"):
        with pytest.raises(ServiceError) as e:
            parse_input_tensor(_body(data, dtype=dtype), (1, 2, 2), 4)
        assert e.value.status == 400 and "number" in e.value.message, e.value.message


@pytest.mark.security
def test_huge_integers_in_data_are_a_400():
    with pytest.raises(ServiceError) as e:
        parse_input_tensor(_body([10**400, 0, 0, 0], dtype="FP32"), (1, 2, 2), 4)
    assert e.value.status == 400 and "too large" in e.value.message, e.value.message


def test_numbers_are_accepted():
    x, dtype = parse_input_tensor(_body([[0, 1.0], [254, 255]]), (1, 2, 2), 4)
    assert dtype == "UINT8" and x.tolist() == [[[[0, 1], [254, 255]]]]
