"""Request and response bodies of the REST API (pydantic), which also document it at `/docs`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Strict):
    """JSON form of `POST /v1/predict`: an image, or pen strokes (`strokes`), not both."""

    image_base64: str | None = Field(
        None, description="the image file's bytes (PNG, JPEG, BMP, ...) in base64; a data URL works too"
    )
    strokes: list[list[list[float]]] | None = Field(
        None,
        description="instead of an image, handwriting as pen strokes: each a list of [x, y] points (any "
        "unit, y downwards, e.g. canvas pixels; further numbers per point such as time are ignored). The "
        "strokes are drawn at the model's handwriting scale, so the size and pen they were drawn with do "
        "not matter",
    )
    beam: int = Field(1, strict=True, description="beam width, a JSON integer; 1 = greedy decoding")
    drawn: bool = Field(
        False,
        strict=True,
        description="true for handwriting drawn at any size (a canvas, a tablet): its writing size is "
        "normalised to the model's handwriting scale before recognition",
    )

    @model_validator(mode="after")
    def _one_input(self) -> PredictRequest:
        if (self.image_base64 is None) == (self.strokes is None):
            raise ValueError("send exactly one of image_base64 (an image) and strokes (pen strokes)")
        return self


class BatchRequest(_Strict):
    """JSON form of `POST /v1/predict/batch`."""

    images: list[str] = Field(description="images in base64, at most the server's --max-batch")
    beam: int = Field(1, strict=True, description="beam width, a JSON integer; 1 = greedy decoding")
    drawn: bool = Field(
        False,
        strict=True,
        description="true for handwriting drawn at any size (a canvas, a tablet): its writing size is "
        "normalised to the model's handwriting scale before recognition",
    )


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable reason, e.g. payload_too_large, invalid_image, timeout")
    message: str = Field(description="what went wrong and what to do")


class ErrorResponse(BaseModel):
    error: ErrorBody


class Timing(BaseModel):
    """Milliseconds: waiting for a worker, decoding the image, running the model, and the whole request."""

    queue: float
    decode: float
    inference: float
    total: float


class PredictResponse(BaseModel):
    latex: str = Field(description="the recognised formula")
    tokens: list[str] = Field(description="the decoded token sequence")
    score: float = Field(
        description="mean probability the model gave its output tokens, in [0, 1]; 0 for an empty output"
    )
    min_prob: float = Field(
        description="lowest of those probabilities: how sure the model is of its weakest token"
    )
    beam: int
    timing_ms: Timing


class BatchItem(BaseModel):
    index: int
    filename: str | None = None
    result: PredictResponse | None = None
    error: ErrorBody | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
    count: int
    failed: int
    total_ms: float


class DigitResponse(BaseModel):
    digit: int = Field(description="the predicted digit 0-9")
    probability: float = Field(description="its probability")
    probabilities: list[float] = Field(description="probability of each digit 0-9")
    timing_ms: Timing


class ModelInfo(BaseModel):
    name: str
    backend: str
    vocab_size: int
    max_beam: int
    meta: dict = Field(
        default_factory=dict, description="provenance the model file records (data, steps, metrics)"
    )


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    digits: bool = Field(description="whether POST /v1/digits has a digit model")


class HealthResponse(BaseModel):
    status: str
    version: str
    model: str
    backend: str
    uptime_s: float
    workers: int
    pending: int
