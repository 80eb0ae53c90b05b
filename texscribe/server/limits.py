"""Request limits and the HTTP errors they raise.

Every user mistake becomes an `ApiError` with a status code, a short machine-readable `code`
and a message saying what to do; the app turns it into `{"error": {"code", "message"}}`.
Body size is enforced while the body streams in (`BodySizeLimit`), before any parsing, so an
oversized upload never sits in memory or on disk.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# What a client may send as an image part. Browsers and curl label unknown files
# application/octet-stream; the bytes are sniffed by the image decoder anyway.
IMAGE_CONTENT_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/jpg",
        "image/bmp",
        "image/x-ms-bmp",
        "image/gif",
        "image/tiff",
        "image/webp",
        "application/octet-stream",
    }
)
REQUEST_CONTENT_TYPES = ("multipart/form-data", "application/json")


class ApiError(Exception):
    """An error the client caused (or a server limit it hit), sent as JSON with `status`."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def media_type(content_type: str | None) -> str:
    """`'Multipart/Form-Data; boundary=x'` -> `'multipart/form-data'` ('' when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_request_type(content_type: str | None) -> str:
    """The request's media type, or 415 when it is neither multipart nor JSON."""
    kind = media_type(content_type)
    if kind not in REQUEST_CONTENT_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"request Content-Type {kind or '(none)'!r} is not supported; send multipart/form-data "
            "with a 'file' part, or application/json with 'image_base64'",
        )
    return kind


def check_image_part_type(content_type: str | None, name: str) -> None:
    """415 when an uploaded part declares a type that is not an image (e.g. text/plain)."""
    kind = media_type(content_type)
    if kind and kind not in IMAGE_CONTENT_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"part {name!r} has Content-Type {kind!r}; upload an image "
            f"({', '.join(sorted(t for t in IMAGE_CONTENT_TYPES if t.startswith('image/')))})",
        )


def check_payload_size(data: bytes, limit: int, name: str) -> bytes:
    """400 for an empty image, 413 for one over `limit` bytes; returns `data`."""
    if not data:
        raise ApiError(400, "empty_body", f"{name!r} is empty (0 bytes); send the image's bytes")
    if len(data) > limit:
        raise ApiError(
            413,
            "payload_too_large",
            f"{name!r} is {len(data):,} bytes; the limit is {limit:,} bytes (server option --max-upload-mb)",
        )
    return data


def decode_base64(text: str, limit: int, name: str = "image_base64") -> bytes:
    """Strictly decode base64 (a `data:image/...;base64,` prefix is allowed) into at most `limit` bytes."""
    text = text.strip()
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or ";base64" not in header:
            raise ApiError(
                400, "invalid_base64", f"{name!r}: a data URL must look like data:image/png;base64,..."
            )
    if not text:
        raise ApiError(400, "empty_body", f"{name!r} is empty; send the image's bytes in base64")
    # 4 base64 characters carry 3 bytes: reject oversized input before decoding it.
    if len(text) * 3 // 4 > limit + 3:
        raise ApiError(
            413,
            "payload_too_large",
            f"{name!r} decodes to about {len(text) * 3 // 4:,} bytes; the limit is {limit:,} bytes",
        )
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "invalid_base64", f"{name!r} is not valid base64 ({exc})") from exc
    return check_payload_size(data, limit, name)


class BodySizeLimit:
    """ASGI middleware: 413 as soon as a request body passes `limit_for(path)` bytes.

    A declared Content-Length over the limit is refused before reading anything; a chunked or
    lying body is counted as it streams and cut off at the limit. The error surfaces inside the
    endpoint's `await request.body()/form()`, where the app's handler turns it into JSON.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            error = _too_large(limit, declared)
            await _send_json(send, error.status, error.body())
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit, None)
            return message

        await self.app(scope, limited_receive, send)


def _too_large(limit: int, size: int | None) -> ApiError:
    size_text = f"is {size:,} bytes, over" if size is not None else "exceeds"
    return ApiError(
        413,
        "payload_too_large",
        f"request body {size_text} the limit of {limit:,} bytes (set by the server's --max-upload-mb, "
        "plus room for encoding overhead)",
    )


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


# ----------------------------------------------------------------------------------------------- rendering
def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def validation_message(errors: list[dict]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "payload_too_large"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = (
            f"no such endpoint: {request.method} {request.url.path}"
            if exc.status_code == 404
            else str(exc.detail)
        )
        return _error(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")
