"""The API endpoints. Each handler reads the request, hands the model work to the `InferencePool` and
fills in the times only it knows (queue, total); the work itself is in `texscribe.server.jobs`.

Handlers find the server's state (settings, model, pool) at `request.app.state.server`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from texscribe import __version__
from texscribe.data.render_strokes import Ink
from texscribe.server import jobs, schemas
from texscribe.server.inputs import InputLimits, read_images
from texscribe.server.limits import ApiError
from texscribe.server.pool import InferencePool


@dataclass
class ServerState:
    """What the handlers share: `settings` is a `ServerSettings`, `recognizer` an `inference.Recognizer`."""

    settings: Any
    recognizer: Any
    pool: InferencePool
    digits: jobs.DigitModel
    limits: InputLimits
    started: float = field(default_factory=time.time)  # epoch seconds, for /healthz's uptime


def _state(request: Request) -> ServerState:
    return request.app.state.server


# ----------------------------------------------------------------------------------------------- docs
def _body_doc(file_field: str, json_schema: str, many: bool) -> dict[str, Any]:
    """OpenAPI request body listing both accepted forms (the endpoints parse the body themselves)."""
    file_schema = {"type": "string", "format": "binary"}
    files = {"type": "array", "items": file_schema} if many else file_schema
    schema = getattr(schemas, json_schema).model_json_schema()
    fields: dict[str, Any] = {file_field: files, "beam": {"type": "integer", "default": 1}}
    if "drawn" in schema.get("properties", {}):  # formula endpoints: handwriting drawn at any size
        fields["drawn"] = {"type": "boolean", "default": False}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [file_field],
                        "properties": fields,
                    }
                },
                "application/json": {"schema": schema},
            },
        }
    }


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ErrorResponse, "description": text}
    for status, text in {
        400: "empty body, bad base64/JSON/multipart",
        413: "upload, image or batch too large",
        415: "not multipart/JSON, or a non-image part",
        422: "undecodable image or invalid field",
        503: "server busy",
        504: "inference timed out",
    }.items()
}

router = APIRouter()


def _image_endpoint(path: str, response: type, summary: str, *, many: bool = False) -> Any:
    """`router.post` for an endpoint that reads images from the body itself (documented: `_body_doc`)."""
    body = (
        _body_doc("files", "BatchRequest", many=True)
        if many
        else _body_doc("file", "PredictRequest", many=False)
    )
    return router.post(
        path, response_model=response, responses=_ERROR_RESPONSES, openapi_extra=body, summary=summary
    )


# ----------------------------------------------------------------------------------------------- formulas
async def _recognize_request(request: Request, batch: bool) -> tuple[list[schemas.BatchItem], float]:
    """Read the request's images, run `jobs.recognize` in the pool, fill in each result's queue and total
    times; returns the results and the request's start (`time.perf_counter()`)."""
    t_start = time.perf_counter()
    state = _state(request)
    req = await read_images(request, state.limits, batch=batch)
    max_tokens = state.settings.max_tokens
    results, queued = await state.pool.run(
        lambda deadline: jobs.recognize(
            state.recognizer, req.items, req.beam, max_tokens, deadline, req.drawn
        ),
        state.settings.timeout_s,
    )
    total = jobs.ms(time.perf_counter() - t_start)
    for item in results:
        if item.result is not None:
            item.result.timing_ms.queue, item.result.timing_ms.total = jobs.ms(queued), total
    return results, t_start


@_image_endpoint("/v1/predict", schemas.PredictResponse, "Recognise one image")
async def predict(request: Request) -> schemas.PredictResponse:
    (item,), _ = await _recognize_request(request, batch=False)
    if item.error is not None:
        raise ApiError(422, item.error.code, item.error.message)
    return item.result


@_image_endpoint(
    "/v1/predict/batch",
    schemas.BatchResponse,
    "Recognise several images in one batched call; a bad image fails alone",
    many=True,
)
async def predict_batch(request: Request) -> schemas.BatchResponse:
    results, t_start = await _recognize_request(request, batch=True)
    failed = sum(1 for r in results if r.error is not None)
    return schemas.BatchResponse(
        results=results, count=len(results), failed=failed, total_ms=jobs.ms(time.perf_counter() - t_start)
    )


# ----------------------------------------------------------------------------------------------- digits
@_image_endpoint("/v1/digits", schemas.DigitResponse, "Classify one handwritten digit (MNIST-style)")
async def classify_digit(request: Request) -> schemas.DigitResponse:
    t_start = time.perf_counter()
    state = _state(request)
    items = (await read_images(request, state.limits, batch=False)).items
    name, data = items[0]
    if isinstance(data, Ink):
        raise ApiError(422, "invalid_request", "strokes: the digit classifier reads images only")
    max_pixels = state.settings.max_pixels
    result, queued = await state.pool.run(
        lambda deadline: jobs.classify_digit(state.digits, data, name, max_pixels, deadline),
        state.settings.timeout_s,
    )
    result.timing_ms.queue = jobs.ms(queued)
    result.timing_ms.total = jobs.ms(time.perf_counter() - t_start)
    return result


# ----------------------------------------------------------------------------------------------- status
@router.get("/v1/models", response_model=schemas.ModelsResponse, summary="The loaded model")
async def models(request: Request) -> schemas.ModelsResponse:
    state = _state(request)
    return schemas.ModelsResponse(models=[_model_info(state)], digits=state.settings.digits)


@router.get("/healthz", response_model=schemas.HealthResponse, summary="Liveness and load")
async def healthz(request: Request) -> schemas.HealthResponse:
    state = _state(request)
    return schemas.HealthResponse(
        status="ok",
        version=__version__,
        model=model_name(state.settings.model),
        backend=state.settings.backend,
        uptime_s=round(time.time() - state.started, 3),
        workers=state.pool.workers,
        pending=state.pool.pending,
    )


def model_name(model: str) -> str:
    """What the API shows of the model: its shipped name, or only the file name of a path."""
    return Path(model).name


def _model_info(state: ServerState) -> schemas.ModelInfo:
    settings = state.settings
    return schemas.ModelInfo(
        name=model_name(settings.model),
        backend=settings.backend,
        vocab_size=len(state.recognizer.vocab),
        max_beam=settings.max_beam,
        meta=json.loads(json.dumps(state.recognizer.models[0].meta or {}, default=str)),  # JSON-safe
    )
