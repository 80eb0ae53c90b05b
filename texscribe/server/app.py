"""The REST API and web page: `create_app(settings)` loads the model once and serves it.

Endpoints: `POST /v1/predict` (multipart `file` or JSON `image_base64`), `POST /v1/predict/batch`,
`POST /v1/digits`, `GET /v1/models`, `GET /healthz`, the web page at `/` and offline API docs at
`/docs`. Image decoding and inference run in a bounded `InferencePool`, never on the event loop.

Modules: `routes` (the endpoints), `jobs` (what a worker runs per request), `inputs` (reading images
from a request), `limits` (request limits, errors as JSON), `pool` (the worker pool), `pages` (web page).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from texscribe import __version__
from texscribe.server.inputs import InputLimits
from texscribe.server.jobs import DigitModel
from texscribe.server.limits import BodySizeLimit, install_error_handlers
from texscribe.server.pages import install_pages
from texscribe.server.pool import InferencePool
from texscribe.server.routes import ServerState, router


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
    data_overrides: list[str] = field(default_factory=list)  # data.KEY=VALUE: how the model reads images


def create_app(settings: ServerSettings | None = None, recognizer: Any = None) -> FastAPI:
    """Build the app. Loads `settings.model` with `settings.backend` unless a loaded `recognizer` is given
    (an `inference.Recognizer`; its own `max_pixels` then applies instead of `settings.max_pixels`)."""
    settings = settings or ServerSettings()
    state = _server_state(settings, recognizer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.pool.shutdown()

    app = FastAPI(
        title="texscribe",
        version=__version__,
        description='Images of math to LaTeX. Errors are JSON: `{"error": {"code", "message"}}`.',
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.server = state
    install_error_handlers(app)
    install_pages(app)
    app.add_middleware(BodySizeLimit, limit_for=_body_limits(settings))
    app.include_router(router)
    return app


def _server_state(settings: ServerSettings, recognizer: Any) -> ServerState:
    """Check the decoding limits, load the model (unless given), set the CPU threads, start the pool."""
    from texscribe.inference import DECODE_LIMITS, available_cpus, check_range, load_model
    from texscribe.threads import set_torch_threads

    check_range("max_beam", settings.max_beam, *DECODE_LIMITS["beam"])  # before a request meets them
    check_range("max_tokens", settings.max_tokens, *DECODE_LIMITS["max_len"])
    # workers x threads <= the CPUs we may use: oversubscribed torch/OpenMP threads spin and crawl
    threads = settings.threads or max(1, available_cpus() // settings.workers)
    if recognizer is None:
        recognizer = load_model(
            settings.model,
            backend=settings.backend,
            num_threads=threads,
            max_pixels=settings.max_pixels,
            data_overrides=settings.data_overrides,
        )
    set_torch_threads(threads, "threads", single_interop=True)
    return ServerState(
        settings=settings,
        recognizer=recognizer,
        pool=InferencePool(settings.workers, settings.max_pending),
        digits=DigitModel(settings.digits, settings.digit_model),
        limits=InputLimits(settings.max_upload_bytes, settings.max_batch, settings.max_beam),
    )


def _body_limits(settings: ServerSettings) -> Callable[[str], int]:
    """Request path -> largest body in bytes: one image (base64 or multipart overhead included), or a batch."""
    single = int(settings.max_upload_bytes * 4 / 3) + 64 * 1024
    return lambda path: single * settings.max_batch if path.endswith("/batch") else single
