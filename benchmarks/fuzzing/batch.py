"""What the surfaces share: settings, the outcome report, running a texscribe command under a time
budget, and `settle`, which narrows a failed batched call down to the input at fault.

Time is CPU time. The benchmark runs at `nice -n 19` beside a training run, where the wall clock of an
input measures the scheduler as much as the input (a 0.3 s image took 10 s while the training run
validated). So an input hangs when it uses more than the limit in CPU seconds, or when its process sits
blocked (no thread runnable, no CPU used) for longer than the limit: a read from a FIFO, say.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Report = Callable[[str, int, str, str], None]  # (outcome, input index, what the input is, detail)
TRACEBACK = "Traceback (most recent call last)"
# Unbuffered output, so that answers can be timed as they come. One torch thread everywhere (the CLIs get
# --threads 1 too): beside a training run on 2 cores, two threads that wait for each other made
# `texscribe predict` 16x slower (62 s vs 3.8 s for 24 images).
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
TICK = os.sysconf("SC_CLK_TCK")
STARTUP_CPU = 30.0  # CPU seconds a command may use before its first input (imports, model loading: ~3)


@dataclass
class Settings:
    seed: int
    time_limit: float  # CPU seconds one input may use (or wall seconds it may sit blocked)
    model: str
    folder: Path  # this surface's scratch folder


@dataclass
class Item:
    """One input of a batched surface: its index (for `cases.case_rng`), a description, its payload."""

    index: int
    what: str
    data: Any


@dataclass
class Attempt:
    """What one batched call said: `answers[index] = (outcome, detail)`; `failure = (outcome, detail)` when
    the call crashed, hung or refused as a whole; `culprit`: the input it failed on, when that is known."""

    answers: dict[int, tuple[str, str]] = field(default_factory=dict)
    failure: tuple[str, str] | None = None
    culprit: int | None = None


def settle(items: list[Item], attempt: Callable[[list[Item]], Attempt], report: Report) -> None:
    """Run `items` in one call; the inputs a failed call left unanswered are retried in halves, so a failure
    is charged to the one input that causes it alone."""
    result = attempt(items)
    for item in items:
        if item.index in result.answers:
            outcome, detail = result.answers[item.index]
            report(outcome, item.index, item.what, detail)
    left = [it for it in items if it.index not in result.answers]
    if not left:
        return
    if result.failure is None:
        for item in left:
            report("unreported", item.index, item.what, "the call neither answered nor skipped it")
        return
    if len(items) == 1 or result.culprit is not None:
        culprit = next((it for it in left if it.index == result.culprit), left[0])
        report(*result.failure[:1], culprit.index, culprit.what, result.failure[1])
        rest = [it for it in left if it is not culprit]
        if rest:
            settle(rest, attempt, report)
        return
    half = max(1, len(left) // 2)
    settle(left[:half], attempt, report)
    settle(left[half:], attempt, report)


# ------------------------------------------------------------------------------------------- processes
def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid`, all its threads (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None


def runnable(pid: int) -> bool:
    """Whether any thread of `pid` is running or waiting for a CPU (state R)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return any((t / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R" for t in tasks)
    except (OSError, IndexError):
        return False


class Watch:
    """Follows one process: CPU used since `mark()`, and wall seconds it has spent blocked."""

    def __init__(self, pid: int):
        self.pid = pid
        self.mark()

    def mark(self, cpu: float | None = None) -> None:
        """Start counting now (or from `cpu`, a reading taken a moment ago)."""
        self.cpu_at = self.last_cpu = cpu if cpu is not None else (cpu_seconds(self.pid) or 0.0)
        self.active_at = time.monotonic()

    def used(self) -> float:
        cpu = cpu_seconds(self.pid)
        return 0.0 if cpu is None else cpu - self.cpu_at

    def blocked_for(self) -> float:
        cpu = cpu_seconds(self.pid)
        if cpu is None or cpu > self.last_cpu or runnable(self.pid):  # gone, working, or waiting its turn
            self.last_cpu, self.active_at = cpu or self.last_cpu, time.monotonic()
        return time.monotonic() - self.active_at

    def over(self, cpu_budget: float, block_limit: float) -> str | None:
        """Why the process should be stopped now, or None."""
        if self.used() > cpu_budget:
            return f"used over {cpu_budget:.0f} s of CPU"
        if self.blocked_for() > block_limit:
            return f"blocked (no CPU used, nothing runnable) for {block_limit:.0f} s"
        return None


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "texscribe.cli", *args]


def run_call(
    cmd: list[str], cpu_budget: float, block_limit: float, cwd: Path | None = None
) -> tuple[int | None, str, str, str]:
    """(exit status, or None when stopped; stdout; stderr; why it was stopped) of `cmd` and its children."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=ENV,
                            start_new_session=True)  # fmt: skip
    watch, why = Watch(proc.pid), ""
    while True:
        try:
            out, err = proc.communicate(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            why = watch.over(cpu_budget, block_limit) or ""
            if why:
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
                break
    rc = None if why else proc.returncode
    return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), why


def call_failure(rc: int | None, err: str, why: str = "") -> tuple[str, str] | None:
    """How a CLI call failed as a whole: stopped by the watch (hang), a traceback or a signal; else None."""
    if rc is None:
        return "hang", f"call stopped: {why}"
    if TRACEBACK in err:
        return "traceback", f"exit {rc}: {traceback_summary(err)}"
    if rc not in (0, 1, 2):
        return "traceback", f"exit {rc}: {err[-300:]}"
    return None


def judge_prediction(record: dict) -> tuple[str, str]:
    """A prediction (`latex`, `score`) -> confident empty or handled."""
    detail = f"latex={str(record.get('latex'))[:80]!r} score={record.get('score')}"
    if not str(record.get("latex", "")).strip() and float(record.get("score") or 0) > 0.5:
        return "confident empty", detail
    return "handled", detail


def traceback_summary(text: str) -> str:
    """The exception line of the first traceback in `text` and the innermost frames' locations."""
    lines = text[text.find(TRACEBACK) :].splitlines()
    frames = [ln.strip() for ln in lines if ln.strip().startswith('File "')]
    end = next((ln for ln in lines[1:] if ln and not ln[0].isspace() and not ln.startswith("During ")), "?")
    where = " <- ".join(f.replace('File "', "").split('", line ')[0].rsplit("/", 1)[-1] + ":" +
                         f.split(", line ")[-1].replace(", in ", " ") for f in frames[-3:][::-1])  # fmt: skip
    return f"{end[:300]} at {where}"
