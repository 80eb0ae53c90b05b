"""Reading images out of requests: multipart parts, base64 JSON or JSON pen strokes, with every malformed
case an `ApiError`.

Nothing a client sends becomes a filesystem path: file names are only labels for messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from texscribe.data.render_strokes import Ink
from texscribe.server import schemas
from texscribe.server.limits import (
    ApiError,
    check_image_part_type,
    check_payload_size,
    check_request_type,
    decode_base64,
    validation_message,
)

MAX_STROKE_POINTS = 200_000  # pen points per request (a long formula drawn on the page has a few thousand)
# Starlette caps non-file form fields at 1 MiB by default; base64 never travels in a form field here.
_FORM_FIELD_BYTES = 64 * 1024


@dataclass(frozen=True)
class InputLimits:
    max_upload_bytes: int  # per image, after base64 decoding
    max_batch: int  # images per batch request
    max_beam: int


@dataclass(frozen=True)
class ImageRequest:
    """What a formula request asks for: its images as (name, bytes), or its pen strokes as (name, `Ink`),
    the beam width, and whether the images are drawn handwriting of any size (`drawn`: normalise the
    writing size first)."""

    items: list[tuple[str, bytes | Ink]]
    beam: int
    drawn: bool = False


async def read_images(request: Request, limits: InputLimits, batch: bool) -> ImageRequest:
    """The request's images, beam width and `drawn` flag; every malformed case is an `ApiError`."""
    kind = check_request_type(request.headers.get("content-type"))
    limit = limits.max_upload_bytes
    if kind == "application/json":
        body = await request.body()
        if not body:
            raise ApiError(400, "empty_body", "request body is empty; send a JSON object")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
        except RecursionError:  # the parser recurses once per nesting level
            raise ApiError(
                400,
                "invalid_json",
                "request body nests JSON arrays/objects too deeply; send one flat object such as "
                '{"image_base64": "...", "beam": 1}',
            ) from None
        model = schemas.BatchRequest if batch else schemas.PredictRequest
        try:
            parsed = model.model_validate(payload)
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", validation_message(exc.errors())) from None
        if not batch and parsed.strokes is not None:
            return ImageRequest(
                [("strokes", _ink(parsed.strokes))], _check_beam(parsed.beam, limits.max_beam)
            )
        texts = parsed.images if batch else [parsed.image_base64]
        _check_count(len(texts), limits.max_batch, batch)
        items = [(f"images[{i}]" if batch else "image_base64", t) for i, t in enumerate(texts)]
        return ImageRequest(
            [(name, decode_base64(text, limit, name)) for name, text in items],
            _check_beam(parsed.beam, limits.max_beam),
            parsed.drawn,
        )

    max_files = limits.max_batch if batch else 1
    try:
        form = await request.form(max_files=max_files + 1, max_fields=8, max_part_size=_FORM_FIELD_BYTES)
    except StarletteHTTPException as exc:  # malformed multipart, too many parts
        raise ApiError(400, "invalid_multipart", f"cannot parse multipart body: {exc.detail}") from None
    try:
        field_names = ("files", "file") if batch else ("file",)
        uploads = [u for key in field_names for u in form.getlist(key) if isinstance(u, UploadFile)]
        if not uploads:
            raise ApiError(
                400,
                "missing_file",
                f"multipart body has no {' or '.join(repr(f) for f in field_names)} file part; "
                f"fields received: {sorted(set(form.keys())) or 'none'}",
            )
        _check_count(len(uploads), limits.max_batch, batch)
        items = []
        for i, upload in enumerate(uploads):
            name = _safe_name(upload.filename, i)
            check_image_part_type(upload.content_type, name)
            items.append((name, check_payload_size(await upload.read(limit + 1), limit, name)))
        return ImageRequest(
            items,
            _check_beam(form.get("beam", "1"), limits.max_beam),
            _check_drawn(form.get("drawn", "false")),
        )
    finally:
        await form.close()


def _ink(strokes: list[list[list[float]]]) -> Ink:
    """The JSON `strokes` field as `Ink`: each point needs x and y (further numbers are ignored); at most
    `MAX_STROKE_POINTS` points in all. Ink that shows nothing written is refused later, per image, by the
    recogniser (`render_ink`), like an unusable image."""
    total = sum(len(stroke) for stroke in strokes)
    if total > MAX_STROKE_POINTS:
        raise ApiError(
            413, "payload_too_large", f"strokes: {total:,} points sent; the limit is {MAX_STROKE_POINTS:,}"
        )
    traces = []
    for i, stroke in enumerate(strokes):
        for j, point in enumerate(stroke):
            if len(point) < 2:
                raise ApiError(422, "invalid_request", f"strokes[{i}][{j}]: a point is [x, y], got {point!r}")
        traces.append(np.array([point[:2] for point in stroke], dtype=np.float64).reshape(-1, 2))
    return Ink(tuple(traces))


def _check_count(count: int, max_batch: int, batch: bool) -> None:
    if batch and count == 0:
        raise ApiError(400, "empty_batch", "the batch holds no images")
    if count > (max_batch if batch else 1):
        raise ApiError(
            413,
            "too_many_images",
            f"{count} images sent; the limit is {max_batch if batch else 1} per request"
            + ("" if batch else " (use POST /v1/predict/batch for several)"),
        )


def _check_drawn(value: Any) -> bool:
    """The multipart `drawn` field: true/false (also 1/0, yes/no), anything else a 422 naming it."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ApiError(422, "invalid_request", f"drawn must be true or false, got {value!r}")


def _check_beam(value: Any, max_beam: int) -> int:
    try:
        if isinstance(value, (bool, float)):  # int() would take true as 1 and 2.7 as 2
            raise TypeError
        beam = int(value)
    except (TypeError, ValueError):
        raise ApiError(422, "invalid_request", f"beam must be an integer, got {value!r}") from None
    if not 1 <= beam <= max_beam:
        raise ApiError(422, "invalid_request", f"beam must be between 1 and {max_beam}, got {beam}")
    return beam


def _safe_name(filename: str | None, index: int) -> str:
    """A client file name for messages only (never opened): last path part, printable, at most 100 chars."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())[:100]
    return base or f"file[{index}]"
