"""Parsing and validation of Open Inference Protocol tensors (pure functions; no web framework here)."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch

from spikeformer.serve.errors import bad_request, too_large

__all__ = ["DATATYPES", "IMAGE_FORMATS", "parse_input_tensor", "requested_outputs", "OUTPUT_NAMES", "decode_image"]

DATATYPES = ("UINT8", "FP32")
OUTPUT_NAMES = ("logits", "class")
_JSON_KINDS = {str: "strings", bool: "booleans", type(None): "null"}
IMAGE_FORMATS = ("PNG", "JPEG")  # the only Pillow decoders an upload reaches


def _shape_text(c: int, h: int, w: int) -> str:
    single = f"[B, {h}, {w}] or " if c == 1 else ""
    return f"{single}[B, {c}, {h}, {w}]"


def parse_input_tensor(body: Any, input_shape: tuple[int, int, int], max_images: int) -> tuple[torch.Tensor, str]:
    """Validate ``body["inputs"][0]`` and return ``(tensor [B, C, H, W], datatype)``.

    UINT8 data are raw pixels (0..255) to which the model's preprocessing is applied; FP32 data are taken as the
    already-preprocessed model input. Every problem raises a 400 ``ServiceError`` saying what was received and what
    is accepted.
    """
    c, h, w = input_shape
    accepted = _shape_text(c, h, w)
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object with 'inputs'; got {type(body).__name__}")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise bad_request(
            '\'inputs\' must be a list with exactly one tensor object {"name", "shape", "datatype", "data"}'
        )
    t = inputs[0]
    missing = [k for k in ("name", "shape", "datatype", "data") if k not in t]
    if missing:
        raise bad_request(f"input tensor is missing {missing}; required: name, shape, datatype, data")
    dtype = t["datatype"]
    if dtype not in DATATYPES:
        raise bad_request(
            f"datatype {dtype!r} is not supported; accepted: {', '.join(DATATYPES)} "
            "(UINT8: raw pixels; FP32: preprocessed model input)"
        )
    shape = t["shape"]
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise bad_request(f"shape must be a list of non-negative integers; got {shape!r}")
    if len(shape) not in (3, 4):
        raise bad_request(f"shape {shape} has rank {len(shape)}; accepted: {accepted}")
    if len(shape) == 3:
        if c != 1:
            raise bad_request(
                f"shape {shape} has no channel axis but the model takes {c} channels; accepted: {accepted}"
            )
        shape4 = [shape[0], 1, shape[1], shape[2]]
    else:
        shape4 = list(shape)
    if shape4[1:] != [c, h, w]:
        raise bad_request(f"shape {shape} does not fit the model; accepted: {accepted}")
    if not 1 <= shape4[0] <= max_images:
        raise bad_request(f"batch size {shape4[0]} is out of range; accepted: 1 to {max_images} images per request")
    data = t["data"]
    if not isinstance(data, list):
        raise bad_request(f"data must be a (flat or nested) list of numbers; got {type(data).__name__}")
    try:
        values = np.asarray(data, dtype=object)  # the JSON values as they came: numbers are not coerced yet
    except (ValueError, TypeError):
        raise bad_request("data must be a flat or rectangular nested list of numbers") from None
    kinds = set(map(type, values.ravel()))
    if kinds & {list, dict}:
        raise bad_request("data must be a flat or rectangular nested list of numbers")
    if kinds - {int, float}:
        got = ", ".join(sorted(_JSON_KINDS.get(k, k.__name__) for k in kinds - {int, float}))
        raise bad_request(f"data must hold JSON numbers only; got {got}; accepted: numbers (UINT8: integers 0 to 255)")
    try:
        arr = values.astype(np.float64)
    except OverflowError:
        raise bad_request(
            "data holds a number too large for a 64-bit float; accepted: UINT8 0 to 255, FP32 values"
        ) from None
    expected = math.prod(shape4)
    if arr.size != expected:
        raise bad_request(f"data holds {arr.size} values but shape {shape} needs {expected}")
    if not np.isfinite(arr).all():
        raise bad_request("data contains NaN or infinite values")
    arr = arr.reshape(shape4)
    if dtype == "UINT8":
        if (arr < 0).any() or (arr > 255).any() or (arr != np.round(arr)).any():
            raise bad_request("UINT8 data must be integers from 0 to 255")
        return torch.from_numpy(arr.astype(np.uint8)), dtype
    return torch.from_numpy(arr.astype(np.float32)), dtype


def requested_outputs(body: dict[str, Any]) -> list[str]:
    """Names in ``body["outputs"]`` (all outputs when absent)."""
    outs = body.get("outputs")
    if outs is None:
        return list(OUTPUT_NAMES)
    if not isinstance(outs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outs):
        raise bad_request('outputs must be a list of {"name": ...} objects')
    names = [o["name"] for o in outs]
    unknown = [n for n in names if n not in OUTPUT_NAMES]
    if unknown:
        raise bad_request(f"unknown output(s) {unknown}; accepted: {list(OUTPUT_NAMES)}")
    return names


def decode_image(data: bytes, input_shape: tuple[int, int, int], max_pixels: int) -> tuple[torch.Tensor, list[int]]:
    """PNG/JPEG bytes -> (uint8 ``[1, C, H, W]`` converted and resized to the model's input, original ``[W, H]``).

    The header is read first: other formats are refused before any of their decoders runs, and an image of more than
    ``max_pixels`` (width x height) is refused before its pixels are decoded, so a few hundred kilobytes that unpack
    to gigabytes (a decompression bomb) cost nothing. This is blocking work: call it off the event loop.

    Raises:
        ServiceError: 413 above ``max_pixels``; 400 for anything that is not a readable PNG or JPEG image.
    """
    from PIL import Image, UnidentifiedImageError

    c, h, w = input_shape
    accepted = f"accepted: PNG or JPEG images of at most {max_pixels:,} pixels (width x height)"
    try:
        img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # parses the header only
    except Image.DecompressionBombError:  # Pillow's own ceiling, checked on the header too
        raise too_large(f"the image declares more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; {accepted}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise bad_request(f"the upload is not a readable image; {accepted}") from None
    width, height = img.size
    if width * height > max_pixels:
        raise too_large(f"the image is {width}x{height} = {width * height:,} pixels; {accepted}")
    try:
        img.load()
    except Exception:  # whatever a decoder raises on the client's bytes, the upload is unreadable
        raise bad_request(
            f"the upload is not a readable image (its data are damaged or truncated); {accepted}"
        ) from None
    original = [width, height]
    img = img.convert("L" if c == 1 else "RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None, None] if c == 1 else arr.transpose(2, 0, 1)[None]
    return torch.from_numpy(arr.copy()), original
