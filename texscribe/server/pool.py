"""A bounded worker pool for model calls, so the event loop never runs inference itself.

`workers` threads run model calls (torch and onnxruntime release the GIL while computing); at most
`max_pending` calls wait or run at once, beyond that a request gets 503 at once instead of queueing
forever. Each call has a deadline, and its client gets 504 when it passes: a call still queued is
dropped before it costs any CPU; a running call is handed the deadline and must stop itself there
(`Recognizer.predict_images(deadline=...)` stops within one decoding step), so its worker is free for
the next request: no input can hold a worker much past the server's timeout.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from texscribe.inference import DeadlineExceeded
from texscribe.server.limits import ApiError

T = TypeVar("T")


class InferencePool:
    """Run blocking callables on `workers` threads with a pending cap and a per-call deadline."""

    def __init__(self, workers: int = 1, max_pending: int = 16):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.max_pending = max(max_pending, workers)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="texscribe-infer")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn: Callable[[float], T], timeout_s: float) -> tuple[T, float]:
        """Run `fn(deadline)` in a worker; returns (result, seconds spent queued).

        `deadline` is a `time.monotonic()` value `timeout_s` from now; `fn` must stop by then (raising
        `DeadlineExceeded`, say). 503 when full, 504 past the deadline.
        """
        with self._lock:
            if self._pending >= self.max_pending:
                raise ApiError(
                    503,
                    "busy",
                    f"server busy: {self._pending} requests already queued or running; retry shortly",
                )
            self._pending += 1
        submitted = time.monotonic()
        deadline = submitted + timeout_s
        started: list[float] = []

        def call() -> T:
            started.append(time.monotonic())
            return fn(deadline)

        future = self._executor.submit(call)
        future.add_done_callback(lambda _: self._release())
        waiter = asyncio.wrap_future(future)
        # a call stopped at its deadline ends with DeadlineExceeded after its client had the 504: consume it
        waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            result = await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except (asyncio.TimeoutError, DeadlineExceeded):
            state = "was still queued" if future.cancel() else "was stopped"
            raise ApiError(
                504,
                "timeout",
                f"inference did not finish within {timeout_s:g} s (the request {state}); "
                "try a smaller image or beam, or raise the server's --timeout-s",
            ) from None
        queued = (started[0] if started else submitted) - submitted
        return result, queued

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
