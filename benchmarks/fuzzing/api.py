"""The Python API: `texscribe.load_model()` once in a worker process, then `Recognizer.predict(x, **kwargs)`
per input (paths, bytes, PIL images, arrays, odd objects, bad decoding arguments); a few inputs are odd
`load_model` calls instead. The worker answers each case with (outcome, detail, seconds); the parent
enforces the time limit and replaces a worker that hangs or dies."""

from __future__ import annotations

import io
import multiprocessing
import os
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fuzzing import cases
from fuzzing.batch import Report, Settings, Watch

GOOD_KWARGS = [{}, {}, {}, {"beam": 2}, {"beam": 3, "r2l": True}, {"max_len": 1}, {"max_len": 400},
               {"batch_size": 1}, {"length_penalty": 0.0}]  # fmt: skip
BAD_KWARGS = [{"beam": 0}, {"beam": -1}, {"beam": "2"}, {"beam": 2.5}, {"beam": None}, {"max_len": 0},
              {"max_len": -5}, {"batch_size": 0}, {"length_penalty": float("nan")}, {"length_penalty": -1e9},
              {"beam": True}, {"max_len": 10**12}, {"beam": 10**6}, {"length_penalty": 11},
              {"batch_size": 10**9}, {"length_penalty": "1"}]  # fmt: skip


def make_case(rng: np.random.Generator, folder: Path, index: int) -> tuple[tuple, str]:
    """((call, payload spec, kwargs), description): the worker turns the spec into the object passed."""
    if rng.random() < 0.02:
        return _load_model_case(rng, folder, index)
    kwargs = cases.pick(rng, GOOD_KWARGS) if rng.random() < 0.9 else cases.pick(rng, BAD_KWARGS)
    if rng.random() < 0.1:
        specs = [_payload_spec(rng, folder, f"{index}_{k}") for k in range(int(rng.integers(0, 4)))]
        spec, what = ("list", [s for s, _ in specs]), "list of " + ", ".join(w for _, w in specs)
    else:
        spec, what = _payload_spec(rng, folder, str(index))
    return ("predict", spec, kwargs), f"{what}; {kwargs}"


def _payload_spec(rng: np.random.Generator, folder: Path, name: str) -> tuple[tuple, str]:
    kind = cases.pick(rng, ["path"] * 3 + ["bytes"] * 3 + ["pil"] * 2 + ["array"] * 3 + ["pathlib", "bytearray",
                            "memoryview", "bytesio", "object", "special"])  # fmt: skip
    if kind == "array":
        arr, what = cases.odd_array(rng)
        return ("array", arr), what
    if kind == "object":
        value = cases.pick(rng, [None, 42, 3.5, {"a": 1}, "", "x" * 5000, b"", object.__name__, ["nested"]])
        return ("object", value), f"a {type(value).__name__}"
    if kind == "special":
        path = cases.pick(
            rng, ["/dev/zero", "/dev/null", "/", str(folder / "missing.png"), "a\x00b", "n" * 300]
        )
        return ("path", path), f"path {path[:30]!r}"
    data, suffix, what = cases.image_file(rng)
    if kind in ("path", "pathlib"):
        path = folder / f"a{name}{suffix}"
        path.write_bytes(data)
        return (kind, str(path)), f"{kind} to {what}"
    return (kind, data), f"{kind} of {what}"


def _load_model_case(rng: np.random.Generator, folder: Path, index: int) -> tuple[tuple, str]:
    from texscribe.inference import SHIPPED, resolve_model_path

    shipped = resolve_model_path(next(iter(SHIPPED))).read_bytes()
    kind = cases.pick(rng, ["truncated", "bitflip", "image", "empty", "folder", "fifo", "dev_zero", "device",
                            "backend", "threads"])  # fmt: skip
    path = folder / f"model{index}.pt"
    kwargs: dict[str, Any] = {}
    if kind == "truncated":
        path.write_bytes(shipped[: int(rng.integers(len(shipped)))])
    elif kind == "bitflip":
        flipped = bytearray(shipped)
        for _ in range(20):
            flipped[int(rng.integers(len(flipped)))] ^= 0xFF
        path.write_bytes(bytes(flipped))
    elif kind == "image":
        path.write_bytes(cases.image_file(rng)[0])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path = Path("/dev/zero")
    else:
        path = Path("default")
        kwargs = {"device": cases.pick(rng, ["banana", "cuda:7", "meta", ""])} if kind == "device" else {}
        if kind == "backend":
            kwargs = {"backend": cases.pick(rng, ["onnx", "tensorflow", ""])}
        if kind == "threads":
            kwargs = {"num_threads": cases.pick(rng, [0, -1, 10**6])}
    return ("load_model", str(path), kwargs), f"load_model({kind}) {kwargs}"


def _build(spec: tuple) -> Any:
    kind, value = spec
    if kind == "list":
        return [_build(s) for s in value]
    if kind == "pathlib":
        return Path(value)
    if kind in ("bytearray", "memoryview"):
        return {"bytearray": bytearray, "memoryview": memoryview}[kind](value)
    if kind == "bytesio":
        return io.BytesIO(value)
    if kind == "pil":
        from PIL import Image

        try:  # lazy, as a user's Image.open is; its warnings about the file are the user's, not texscribe's
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return Image.open(io.BytesIO(value))
        except Exception:  # noqa: BLE001 - PIL cannot open it, so no user could pass it as an image
            return value
    return value


def serve_cases(conn, model: str) -> None:
    """Worker process: load the model, then answer (call, spec, kwargs) cases until None arrives."""
    import texscribe
    from texscribe.errors import TexscribeError

    recognizer = texscribe.load_model(model, num_threads=1)
    conn.send("ready")
    while (case := conn.recv()) is not None:
        call, spec, kwargs = case
        start = time.process_time()  # this process, all threads
        try:
            if call == "load_model":
                texscribe.load_model(spec, **kwargs)
                result = ("handled", "loaded")
            else:
                out = recognizer.predict(_build(spec), **kwargs)
                preds = out if isinstance(out, list) else [out]
                empty = [p for p in preds if not p.latex.strip() and p.score > 0.5]
                detail = f"{[(p.latex[:40], round(p.score, 3)) for p in preds]}"
                result = ("confident empty" if empty else "handled", detail)
        except TexscribeError as exc:
            result = ("clean error", f"{type(exc).__name__}: {str(exc)[:300]}")
        except Exception as exc:  # noqa: BLE001 - anything else is what the fuzz looks for
            frames = traceback.extract_tb(exc.__traceback__)[-2:]
            where = "; ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames)
            result = ("traceback", f"{type(exc).__name__}: {str(exc)[:300]} at {where}")
        conn.send((*result, time.process_time() - start))


class ApiWorker:
    """A process holding one loaded model; `run(case, limit)` -> (outcome, detail)."""

    def __init__(self, model: str):
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.proc = context.Process(target=serve_cases, args=(child, model), daemon=True)
        self.proc.start()
        child.close()  # the worker holds the only other end: if it dies, recv() says so at once
        try:
            ready = self.conn.poll(600) and self.conn.recv() == "ready"
        except EOFError:
            ready = False
        if not ready:
            self.stop()
            raise RuntimeError(f"the API worker did not load the model {model!r} (exit {self.proc.exitcode})")

    def run(self, case: tuple, time_limit: float) -> tuple[str, str]:
        """Send one case; a hang is over `time_limit` CPU seconds, or blocked that long (see `batch`)."""
        watch = Watch(self.proc.pid)
        self.conn.send(case)
        while not self.conn.poll(0.5):
            why = watch.over(time_limit, time_limit) if self.proc.is_alive() else ""
            if why:
                self.stop()
                return "hang", why
            if not self.proc.is_alive():
                break
        try:
            outcome, detail, used = self.conn.recv()  # the CPU time the worker measured for this case
        except EOFError:
            self.stop()
            return "traceback", f"the worker process died (exit {self.proc.exitcode})"
        if used > time_limit and outcome in ("handled", "clean error"):
            return "hang", f"used {used:.1f} s of CPU: {detail}"
        return outcome, detail

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()


def fuzz_api(n: int, settings: Settings, report: Report) -> None:
    worker: ApiWorker | None = None
    try:
        for i in range(n):
            case, what = make_case(cases.case_rng(settings.seed, "api", i), settings.folder, i)
            worker = worker if worker is not None and worker.alive else ApiWorker(settings.model)
            outcome, detail = worker.run(case, settings.time_limit)
            report(outcome, i, what, detail)
    finally:
        if worker is not None:
            if worker.alive:
                worker.conn.send(None)
            worker.stop()
