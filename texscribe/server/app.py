"""The REST API and web page: `create_app(settings)` loads the model once and serves it.

Endpoints: `POST /v1/predict` (multipart `file` or JSON `image_base64`), `POST /v1/predict/batch`,
`POST /v1/digits`, `GET /v1/models`, `GET /healthz`, the web page at `/` and offline API docs at
`/docs`. Image decoding and inference run in a bounded `InferencePool`, never on the event loop.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from texscribe import __version__
from texscribe.errors import ImageError, TexscribeError
from texscribe.server import schemas
from texscribe.server.inputs import InputLimits, read_images
from texscribe.server.limits import ApiError, BodySizeLimit, install_error_handlers
from texscribe.server.pool import InferencePool, configure_torch_threads

STATIC_DIR = Path(__file__).parent / "static"


@dataclass
class ServerSettings:
    """Everything `texscribe serve` can set. Sizes in bytes, times in seconds."""

    model: str = "default"
    backend: str = "torch"  # torch | onnx
    workers: int = 2  # inference threads
    threads: int | None = None  # CPU threads per worker; None: the available CPUs split between workers
    max_upload_bytes: int = 10 * 1024 * 1024  # per image
    max_pixels: int = 16_000_000  # per image, checked from the header before decoding
    max_batch: int = 16  # images per batch request
    max_beam: int = 10
    max_pending: int = 32  # requests queued or running before 503
    timeout_s: float = 30.0  # queue + decode + inference, per request
    max_tokens: int = 200  # longest LaTeX token sequence decoded (bounds the work per image)
    digits: bool = True  # serve POST /v1/digits (model loaded on first use)
    digit_model: str | None = None  # digit model file; None: the shipped one


def create_app(settings: ServerSettings | None = None, recognizer: Any = None) -> FastAPI:
    """Build the app. Loads `settings.model` with `settings.backend` unless a loaded `recognizer` is given
    (an `inference.Recognizer`; its own `max_pixels` then applies instead of `settings.max_pixels`)."""
    settings = settings or ServerSettings()
    from texscribe.inference import DECODE_LIMITS, available_cpus, check_deadline, check_range, load_model

    check_range("max_beam", settings.max_beam, *DECODE_LIMITS["beam"])  # before a request meets them
    check_range("max_tokens", settings.max_tokens, *DECODE_LIMITS["max_len"])

    # workers x threads <= the CPUs we may use: oversubscribed torch/OpenMP threads spin and crawl
    threads = settings.threads or max(1, available_cpus() // settings.workers)
    if recognizer is None:
        recognizer = load_model(
            settings.model, backend=settings.backend, num_threads=threads, max_pixels=settings.max_pixels
        )
    configure_torch_threads(threads)
    pool = InferencePool(settings.workers, settings.max_pending)
    digits = _DigitModel(settings.digits, settings.digit_model)
    limits = InputLimits(settings.max_upload_bytes, settings.max_batch, settings.max_beam)
    started = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        pool.shutdown()

    app = FastAPI(
        title="texscribe",
        version=__version__,
        description='Images of math to LaTeX. Errors are JSON: `{"error": {"code", "message"}}`.',
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings, app.state.recognizer, app.state.pool = settings, recognizer, pool
    install_error_handlers(app)
    _install_pages(app)
    single = int(settings.max_upload_bytes * 4 / 3) + 64 * 1024  # base64 or multipart overhead
    app.add_middleware(
        BodySizeLimit,
        limit_for=lambda path: single * settings.max_batch if path.endswith("/batch") else single,
    )

    def recognize(items: list[tuple[str, bytes]], beam: int, deadline: float) -> list[schemas.BatchItem]:
        """Worker-thread job: prepare each image (a bad one fails alone), then decode the good ones together.

        `predict_images` batches them by size; queue and total times are filled in by the caller. Past
        `deadline` (`time.monotonic()`) it stops between images or within one decoding step.
        """
        out = [schemas.BatchItem(index=i, filename=name) for i, (name, _) in enumerate(items)]
        good, images, prep = [], [], []
        for i, (name, data) in enumerate(items):
            check_deadline(deadline)
            start = time.perf_counter()
            try:
                images.append(_prepare(recognizer, data, name))
            except ApiError as exc:
                out[i].error = schemas.ErrorBody(code=exc.code, message=exc.message)
                continue
            good.append(i)
            prep.append(time.perf_counter() - start)
        if images:
            names = [items[i][0] for i in good]
            preds = recognizer.predict_images(
                images, names, beam=beam, max_len=settings.max_tokens, deadline=deadline
            )
            for i, pred, seconds in zip(good, preds, prep):
                out[i].result = schemas.PredictResponse(
                    latex=pred.latex,
                    tokens=list(pred.tokens),
                    score=float(pred.score),
                    min_prob=float(pred.min_prob),
                    beam=beam,
                    timing_ms=schemas.Timing(
                        queue=0, decode=_ms(seconds), inference=_ms(pred.seconds), total=0
                    ),
                )
        return out

    async def run_recognize(
        items: list[tuple[str, bytes]], beam: int, t_start: float
    ) -> list[schemas.BatchItem]:
        results, queued = await pool.run(
            lambda deadline: recognize(items, beam, deadline), settings.timeout_s
        )
        total = _ms(time.perf_counter() - t_start)
        for item in results:
            if item.result is not None:
                item.result.timing_ms.queue, item.result.timing_ms.total = _ms(queued), total
        return results

    @app.post(
        "/v1/predict",
        response_model=schemas.PredictResponse,
        responses=_ERROR_RESPONSES,
        openapi_extra=_body_doc("file", "PredictRequest", many=False),
        summary="Recognise one image",
    )
    async def predict(request: Request) -> schemas.PredictResponse:
        t_start = time.perf_counter()
        items, beam = await read_images(request, limits, batch=False)
        (item,) = await run_recognize(items, beam, t_start)
        if item.error is not None:
            raise ApiError(422, item.error.code, item.error.message)
        return item.result

    @app.post(
        "/v1/predict/batch",
        response_model=schemas.BatchResponse,
        responses=_ERROR_RESPONSES,
        openapi_extra=_body_doc("files", "BatchRequest", many=True),
        summary="Recognise several images in one batched call; a bad image fails alone",
    )
    async def predict_batch(request: Request) -> schemas.BatchResponse:
        t_start = time.perf_counter()
        items, beam = await read_images(request, limits, batch=True)
        results = await run_recognize(items, beam, t_start)
        failed = sum(1 for r in results if r.error is not None)
        return schemas.BatchResponse(
            results=results, count=len(results), failed=failed, total_ms=_ms(time.perf_counter() - t_start)
        )

    @app.post(
        "/v1/digits",
        response_model=schemas.DigitResponse,
        responses=_ERROR_RESPONSES,
        openapi_extra=_body_doc("file", "PredictRequest", many=False),
        summary="Classify one handwritten digit (MNIST-style)",
    )
    async def classify_digit(request: Request) -> schemas.DigitResponse:
        t_start = time.perf_counter()
        items, _ = await read_images(request, limits, batch=False)
        name, data = items[0]

        def job(deadline: float) -> schemas.DigitResponse:
            check_deadline(deadline)  # the rest is bounded: pixel limit, 256-px stroke matching, one forward
            t0 = time.perf_counter()
            image = _decode(data, name, settings.max_pixels)
            t1 = time.perf_counter()
            pred = digits.predict(image)
            t2 = time.perf_counter()
            timing = schemas.Timing(queue=0, decode=_ms(t1 - t0), inference=_ms(t2 - t1), total=0)
            return schemas.DigitResponse(
                digit=pred.digit,
                probability=pred.probability,
                probabilities=pred.probabilities,
                timing_ms=timing,
            )

        result, queued = await pool.run(job, settings.timeout_s)
        result.timing_ms.queue = _ms(queued)
        result.timing_ms.total = _ms(time.perf_counter() - t_start)
        return result

    @app.get("/v1/models", response_model=schemas.ModelsResponse, summary="The loaded model")
    async def models() -> schemas.ModelsResponse:
        return schemas.ModelsResponse(models=[_model_info(recognizer, settings)], digits=settings.digits)

    @app.get("/healthz", response_model=schemas.HealthResponse, summary="Liveness and load")
    async def healthz() -> schemas.HealthResponse:
        return schemas.HealthResponse(
            status="ok",
            version=__version__,
            model=_model_name(settings.model),
            backend=settings.backend,
            uptime_s=round(time.time() - started, 3),
            workers=pool.workers,
            pending=pool.pending,
        )

    return app


# ----------------------------------------------------------------------------------------------- jobs
def _prepare(recognizer: Any, data: bytes, name: str) -> np.ndarray:
    """Decode + crop + resize exactly as the library does; unreadable, oversized or blank images -> 422."""
    try:
        return recognizer.preprocess(data, origin=name)
    except ImageError as exc:
        raise ApiError(422, "invalid_image", str(exc)) from None


def _decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode to the canonical image (for the digit model, which does its own resizing)."""
    from texscribe.images import load_image

    try:
        return load_image(data, origin=name, max_pixels=max_pixels)
    except ImageError as exc:
        raise ApiError(422, "invalid_image", str(exc)) from None


class _DigitModel:
    """The digit classifier, loaded on first use so that the formula server starts without it."""

    def __init__(self, enabled: bool, path: str | None):
        self.enabled = enabled
        self.path = path
        self._model: Any = None
        self._lock = threading.Lock()

    def predict(self, image: np.ndarray) -> Any:
        """Canonical image (H, W) -> `texscribe.digits.DigitPrediction`; 404/503/422 as `ApiError`."""
        if not self.enabled:
            raise ApiError(404, "not_found", "this server was started without the digit model (--no-digits)")
        with self._lock:  # two first requests must not both load it
            if self._model is None:
                try:
                    from texscribe.digits import load_digit_model

                    self._model = load_digit_model(self.path)
                except (ImportError, TexscribeError) as exc:
                    raise ApiError(
                        503, "digits_unavailable", f"digit model cannot be loaded: {exc}"
                    ) from None
        try:
            return self._model.predict(image)
        except ImageError as exc:
            raise ApiError(422, "invalid_image", str(exc)) from None


def _model_name(model: str) -> str:
    """What the API shows of the model: its shipped name, or only the file name of a path."""
    return Path(model).name


def _model_info(recognizer: Any, settings: ServerSettings) -> schemas.ModelInfo:
    return schemas.ModelInfo(
        name=_model_name(settings.model),
        backend=settings.backend,
        vocab_size=len(recognizer.vocab),
        max_beam=settings.max_beam,
        meta=_jsonable(recognizer.models[0].meta or {}),
    )


def _jsonable(meta: dict) -> dict:
    return json.loads(json.dumps(meta, default=str))


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


# ----------------------------------------------------------------------------------------------- docs
def _body_doc(file_field: str, json_schema: str, many: bool) -> dict[str, Any]:
    """OpenAPI request body listing both accepted forms (the endpoints parse the body themselves)."""
    file_schema = {"type": "string", "format": "binary"}
    files = {"type": "array", "items": file_schema} if many else file_schema
    schema = getattr(schemas, json_schema).model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [file_field],
                        "properties": {file_field: files, "beam": {"type": "integer", "default": 1}},
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


# ----------------------------------------------------------------------------------------------- pages
# The page loads nothing from elsewhere; the policy makes the browser enforce that.
_PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _install_pages(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": _PAGE_CSP})

    try:  # Swagger UI's files, shipped inside the fastapi-offline package (the [serve] extra)
        docs_assets = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        docs_assets = None
    if docs_assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=str(docs_assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if docs_assets is None:
            return HTMLResponse(
                "<!doctype html><title>texscribe API</title><p>The interactive docs need the "
                "<code>fastapi-offline</code> package (<code>pip install texscribe[serve]</code>). "
                'The API description is at <a href="/openapi.json">/openapi.json</a>.</p>'
            )
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="texscribe API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
