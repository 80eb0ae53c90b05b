"""Resumable dataset generation: the per-job state file shared by `data render` and `data synth-handwriting`.

Each finished job appends one TAB-separated line to a state file in the output folder:
`id  key  ok  height  width` or `id  key  fail  cause  detail` (`key` is the job's content hash, so a changed
job is redone). A rerun reads the file, keeps the jobs whose key still matches and does the rest.
"""

from __future__ import annotations

import resource
from pathlib import Path


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished (waited-for) descendants."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def load_state(path: Path) -> dict[str, tuple[str, ...]]:
    """id -> (key, "ok", h, w) or (key, "fail", cause, detail); the last line of an id wins."""
    state: dict[str, tuple[str, ...]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            cells = line.split("\t")
            if len(cells) == 5 and cells[2] in ("ok", "fail"):
                state[cells[0]] = tuple(cells[1:])
    return state


def state_line(job_id: str, key: str, outcome: object) -> str:
    """One state line: `outcome` is the image's (height, width) or a failure with `cause` and `detail`."""
    if isinstance(outcome, tuple):
        h, w = outcome
        return f"{job_id}\t{key}\tok\t{h}\t{w}\n"
    detail = str(outcome.detail).replace("\t", " ").replace("\n", " ")  # type: ignore[attr-defined]
    return f"{job_id}\t{key}\tfail\t{outcome.cause}\t{detail}\n"  # type: ignore[attr-defined]
