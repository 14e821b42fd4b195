"""Request dependencies: the service state and API-key scopes (``Annotated`` aliases), and reading request bodies."""

from __future__ import annotations

import json
import re
from functools import partial
from typing import Annotated

import numpy as np
from fastapi import Depends, Request, UploadFile

from spikeformer.serve.errors import bad_request, forbidden, too_large, unauthorized
from spikeformer.serve.services.auth import key_scopes
from spikeformer.serve.services.store_calls import run_store
from spikeformer.serve.state import ServiceState

__all__ = [
    "AdminKey",
    "AlertsKey",
    "InferKey",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INTEGER_DIGITS",
    "State",
    "get_state",
    "json_body",
    "parse_json",
    "read_upload",
    "require_scope",
]


def get_state(request: Request) -> ServiceState:
    return request.app.state.svc


State = Annotated[ServiceState, Depends(get_state)]


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def require_scope(*scopes: str, optional_setting: str | None = None):
    """A dependency accepting a key that holds any of ``scopes`` (``admin`` holds every scope)."""

    async def check(request: Request, state: State) -> str | None:
        if optional_setting and not getattr(state.settings, optional_setting):
            return None
        key = _presented_key(request)
        if not key:
            raise unauthorized(
                f"this endpoint needs an API key with scope {' or '.join(scopes)}: send "
                "'Authorization: Bearer <key>' (create one with: spikeformer keys create)"
            )
        granted = await run_store(partial(key_scopes, state.db, key), "check the API key")
        if granted is None:
            raise unauthorized("the API key is not valid (unknown or revoked)")
        if "admin" not in granted and not granted & set(scopes):
            raise forbidden(f"the API key lacks scope {' or '.join(scopes)} (it has: {', '.join(sorted(granted))})")
        return key

    return check


AdminKey = Annotated[str | None, Depends(require_scope("admin"))]
InferKey = Annotated[str | None, Depends(require_scope("infer", optional_setting="require_api_key"))]
AlertsKey = Annotated[str | None, Depends(require_scope("alerts"))]


MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a JSON body may have (an inference request needs 7)."""
MAX_JSON_INTEGER_DIGITS = 19
"""Most digits of an integer in a JSON body (every 64-bit integer fits)."""

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _is_integer(structure: bytes, before: int, after: int) -> bool:
    """Whether the digits between offsets ``before`` and ``after`` (both non-digits) are a JSON integer: not the
    fraction or exponent of a number, nor followed by one."""
    sign = structure[before] == ord("-")
    lead = structure[before - 1] if sign else structure[before]
    return lead not in b".eE+" and structure[after] not in b".eE"


def _check_json_shape(raw: bytes) -> None:
    """400 when valid JSON ``raw`` nests deeper than ``MAX_JSON_DEPTH`` or holds an integer of more than
    ``MAX_JSON_INTEGER_DIGITS`` digits (vectorized over the bytes: a few milliseconds per megabyte)."""
    structure = b" " + _JSON_STRING.sub(b'""', raw) + b" "  # strings cannot hold brackets or numbers any more
    chars = np.frombuffer(structure, np.uint8)
    opens = (chars == ord("[")).view(np.int8) + (chars == ord("{")).view(np.int8)
    closes = (chars == ord("]")).view(np.int8) + (chars == ord("}")).view(np.int8)
    depth = int(np.cumsum(opens - closes, dtype=np.int32).max())
    if depth > MAX_JSON_DEPTH:
        raise bad_request(f"the JSON body nests {depth} levels deep; accepted: at most {MAX_JSON_DEPTH} levels")
    not_digits = np.flatnonzero((chars < ord("0")) | (chars > ord("9")))
    long_runs = np.flatnonzero(np.diff(not_digits) - 1 > MAX_JSON_INTEGER_DIGITS)  # rare: checked one by one
    if any(_is_integer(structure, int(not_digits[i]), int(not_digits[i + 1])) for i in long_runs):
        raise bad_request(
            f"the JSON body holds an integer of more than {MAX_JSON_INTEGER_DIGITS} digits; accepted: integers of "
            f"at most {MAX_JSON_INTEGER_DIGITS} digits (64-bit)"
        )


def parse_json(raw: bytes) -> object:
    """Parse a JSON request body; every way it can be unfit is a 400 ``ServiceError`` with a message.

    Besides malformed JSON, that is nesting deeper than ``MAX_JSON_DEPTH`` (Python's parser would raise
    ``RecursionError`` past about a thousand) and integers of more than ``MAX_JSON_INTEGER_DIGITS`` digits (no field
    takes one; Python refuses to parse more than 4,300 and cannot make a float of more than 309).
    """
    try:
        value = json.loads(raw)
    except RecursionError:
        raise bad_request(f"the JSON body nests too deeply; accepted: at most {MAX_JSON_DEPTH} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_request(f"the body is not valid JSON: {e}") from None
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise bad_request(
            f"the JSON body holds an integer of more than {MAX_JSON_INTEGER_DIGITS} digits; accepted: integers of "
            f"at most {MAX_JSON_INTEGER_DIGITS} digits (64-bit)"
        ) from None
    _check_json_shape(raw)
    return value


async def json_body(request: Request, limit: int) -> object:
    """The request's JSON body, parsed (:func:`parse_json`); 413 over ``limit`` bytes, 400 when empty or unfit."""
    raw = await request.body()
    if len(raw) > limit:
        raise too_large(f"request body is {len(raw)} bytes; the limit is {limit}")
    if not raw:
        raise bad_request("empty request body; expected a JSON inference request")
    return parse_json(raw)


async def read_upload(state: ServiceState, file: UploadFile) -> bytes:
    """The uploaded image's bytes, within the body limit and not empty (else 413 / 400)."""
    data = await file.read(state.settings.max_body_bytes + 1)
    if len(data) > state.settings.max_body_bytes:
        raise too_large(f"the image is larger than {state.settings.max_body_bytes} bytes")
    if not data:
        raise bad_request("the uploaded file is empty; send a PNG or JPEG image in the multipart field 'file'")
    return data
