"""What a server worker thread runs for one request: recognise formulas, classify a digit.

Both run inside `InferencePool`, given the request's deadline (`time.monotonic()`); they stop there
with `DeadlineExceeded`. Client mistakes become `ApiError`s (422 for an unusable image); the formula
job reports them per image, so a bad image in a batch fails alone.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from texscribe.errors import ImageError, TexscribeError
from texscribe.server import schemas
from texscribe.server.limits import ApiError


def recognize(
    recognizer: Any,
    items: list[tuple[str, bytes]],
    beam: int,
    max_tokens: int,
    deadline: float,
    drawn: bool = False,
) -> list[schemas.BatchItem]:
    """Prepare each `(filename, bytes)` image exactly as the library does (`drawn`: as handwriting of any
    size, see `Recognizer.preprocess`), then decode the good ones together (`inference.iter_predictions`,
    one chunk: one size-batched decode). Queue and total times are left 0 for the caller, who knows them."""
    from texscribe.inference import iter_predictions

    outcomes = iter_predictions(
        recognizer,
        items,
        workers=1,
        chunk_size=max(1, len(items)),
        deadline=deadline,
        load=lambda payload, source: recognizer.preprocess(payload, origin=source, drawn=drawn),
        beam=beam,
        max_len=max_tokens,
    )
    results = []
    for outcome in outcomes:
        item = schemas.BatchItem(index=outcome.index, filename=outcome.source)
        pred = outcome.prediction
        if pred is None:
            item.error = schemas.ErrorBody(code="invalid_image", message=outcome.message or "")
        else:
            decode_s = outcome.load_seconds
            item.result = schemas.PredictResponse(
                latex=pred.latex,
                tokens=list(pred.tokens),
                score=float(pred.score),
                min_prob=float(pred.min_prob),
                beam=beam,
                timing_ms=schemas.Timing(
                    queue=0, decode=ms(decode_s), inference=ms(pred.seconds - decode_s), total=0
                ),
            )
        results.append(item)
    return results


def classify_digit(
    digits: DigitModel, data: bytes, name: str, max_pixels: int, deadline: float
) -> schemas.DigitResponse:
    """Decode one image and classify it; queue and total times are left 0 for the caller."""
    from texscribe.inference import check_deadline

    check_deadline(deadline)  # the rest is bounded: pixel limit, 256-px stroke matching, one forward
    t0 = time.perf_counter()
    image = _decode(data, name, max_pixels)
    t1 = time.perf_counter()
    pred = digits.predict(image)
    t2 = time.perf_counter()
    return schemas.DigitResponse(
        digit=pred.digit,
        probability=pred.probability,
        probabilities=pred.probabilities,
        timing_ms=schemas.Timing(queue=0, decode=ms(t1 - t0), inference=ms(t2 - t1), total=0),
    )


def _decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode to the canonical image (for the digit model, which does its own resizing)."""
    from texscribe.images import load_image

    try:
        return load_image(data, origin=name, max_pixels=max_pixels)
    except ImageError as exc:
        raise ApiError(422, "invalid_image", str(exc)) from None


class DigitModel:
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


def ms(seconds: float) -> float:
    """Seconds -> milliseconds, rounded to the microsecond (the API's timing unit)."""
    return round(seconds * 1000.0, 3)
