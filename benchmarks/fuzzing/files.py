"""`texscribe predict` and `texscribe digits predict` on hundreds of fuzzed files per call."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

import numpy as np

from fuzzing import cases
from fuzzing.batch import (
    ENV,
    STARTUP_CPU,
    Attempt,
    Item,
    Report,
    Settings,
    Watch,
    call_failure,
    cli,
    cpu_seconds,
    judge_prediction,
    run_call,
    settle,
)

PREDICT_CALL = 200  # inputs per `texscribe predict` call
DIGITS_CALL = 400


def file_items(n: int, settings: Settings, surface: str) -> list[Item]:
    """One image file (4 %: a special path) per input, written under the surface's folder."""
    items = []
    for i in range(n):
        rng = cases.case_rng(settings.seed, surface, i)
        if rng.random() < 0.04:
            path, what = special_path(rng, settings.folder, i)
        else:
            data, suffix, what = cases.image_file(rng)
            path = str(settings.folder / f"f{i:05d}{suffix}")
            Path(path).write_bytes(data)
        items.append(Item(i, what, path))
    return items


def special_path(rng: np.random.Generator, folder: Path, i: int) -> tuple[str, str]:
    """A path that is not a plain image file: device, FIFO, folder, missing, link loop, too long a name."""
    kind = cases.pick(rng, ["dev_zero", "dev_null", "fifo", "folder", "missing", "loop", "dangling", "long"])
    base = folder / f"s{i:05d}"
    if kind in ("dev_zero", "dev_null"):
        return f"/dev/{kind[4:]}", f"/dev/{kind[4:]}"
    if kind == "fifo":
        os.mkfifo(base.with_suffix(".png"))
        return str(base.with_suffix(".png")), "a FIFO nobody writes to"
    if kind == "folder":
        (base / "inner").mkdir(parents=True)
        return str(base), "a folder without images"
    if kind == "loop":
        base.with_suffix(".png").symlink_to(base.with_suffix(".png"))
        return str(base.with_suffix(".png")), "a symlink to itself"
    if kind == "dangling":
        base.with_suffix(".png").symlink_to(folder / "nowhere.png")
        return str(base.with_suffix(".png")), "a dangling symlink"
    if kind == "long":
        return str(base) + "n" * 300 + ".png", "a 300-character file name"
    return str(base.with_suffix(".png")), "a missing file"


def fuzz_predict(n: int, settings: Settings, report: Report) -> None:
    """`texscribe predict --format jsonl`: each input is answered by a JSON line or a `skipped` line."""
    items = file_items(n, settings, "predict")
    flags = ["--model", settings.model, "--format", "jsonl", "--no-progress", "--threads", "1"]

    def attempt(batch: list[Item]) -> Attempt:
        budget = STARTUP_CPU + settings.time_limit * len(batch)
        rc, out, err, why = run_call(
            cli("predict", *[it.data for it in batch], *flags), budget, settings.time_limit
        )
        results = {}
        for line in out.splitlines():
            try:
                record = json.loads(line)
                results[record["source"]] = record
            except (ValueError, KeyError, TypeError):
                continue
        skipped = [line for line in err.splitlines() if line.startswith("skipped ")]
        answers = {}
        for it in batch:
            if it.data in results:
                answers[it.index] = judge_prediction(results[it.data])
            else:
                line = next((s for s in skipped if s.startswith(f"skipped {it.data}: ")), None)
                if line is not None:
                    answers[it.index] = ("clean error", line)
        return Attempt(answers, call_failure(rc, err, why))

    for start in range(0, len(items), PREDICT_CALL):
        settle(items[start : start + PREDICT_CALL], attempt, report)


def fuzz_digits(n: int, settings: Settings, report: Report) -> None:
    """`texscribe digits predict`: one line per input, in order, each charged the CPU time since the last."""
    items = file_items(n, settings, "digits")

    def attempt(batch: list[Item]) -> Attempt:
        proc = subprocess.Popen(cli("digits", "predict", *[it.data for it in batch]), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=ENV, start_new_session=True)  # fmt: skip
        watch = Watch(proc.pid)
        lines: queue.Queue = queue.Queue()
        for stream, pipe in (("out", proc.stdout), ("err", proc.stderr)):
            threading.Thread(target=_pump, args=(stream, pipe, proc.pid, lines), daemon=True).start()
        waiting: dict[str, list[Item]] = {}
        for it in batch:
            waiting.setdefault(it.data, []).append(it)
        answers: dict[int, tuple[str, str]] = {}
        errors: list[str] = []
        open_pipes, budget = 2, STARTUP_CPU + settings.time_limit  # the first answer pays the start-up too
        while open_pipes:
            try:
                stream, line, cpu = lines.get(timeout=0.5)
            except queue.Empty:
                why = watch.over(budget, settings.time_limit)
                if why:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    culprit = next(it.index for it in batch if it.index not in answers)
                    return Attempt(answers, ("hang", why), culprit)
                continue
            if line is None:
                open_pipes -= 1
                continue
            if stream == "err":
                errors.append(line)
            path = next((p for p in waiting if line.startswith(f"{p}: ")), None)
            if path is None:
                continue
            item = waiting[path].pop(0)
            if not waiting[path]:
                del waiting[path]
            used = 0.0 if cpu is None else cpu - watch.cpu_at  # None: the process has ended
            outcome = "clean error" if stream == "err" and ": skipped: " in line else "handled"
            answers[item.index] = ("hang", f"used {used:.1f} s of CPU") if used > budget else (outcome, line)
            watch.mark(cpu)
            budget = settings.time_limit
        rc = proc.wait()
        culprit = next((it.index for it in batch if it.index not in answers), None)
        return Attempt(answers, call_failure(rc, "\n".join(errors)), culprit)

    for start in range(0, len(items), DIGITS_CALL):
        settle(items[start : start + DIGITS_CALL], attempt, report)


def _pump(stream: str, pipe, pid: int, lines: queue.Queue) -> None:
    """Put each line of `pipe` on `lines` with the CPU time process `pid` had used by then; None at the end."""
    for raw in pipe:
        lines.put((stream, raw.decode("utf-8", "replace").rstrip("\n"), cpu_seconds(pid)))
    lines.put((stream, None, None))
