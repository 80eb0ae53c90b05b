"""Resumable dataset generation: the per-job state file shared by `data render` and `data synth-handwriting`.

Each finished job appends one TAB-separated line to a state file in the output folder:
`id  key  ok  height  width` or `id  key  fail  cause  detail` (`key` is the job's content hash, so a changed
job is redone). A rerun reads the file, keeps the jobs whose key still matches (`reuse_outcomes`) and does
the rest in a pool of workers (`worker_pool`), logging each outcome as it comes (`logged_outcomes`).
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar


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


JobT = TypeVar("JobT", bound="Job")


class Job(Protocol):
    """What the state file needs of a job: its id, content hash and the image it writes."""

    @property
    def id(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def dest(self) -> Path: ...


def reuse_outcomes(
    jobs: Sequence[JobT], state: dict[str, tuple[str, ...]], failure: Callable[[str, str], object]
) -> tuple[dict[str, object], list[JobT]]:
    """(job id -> outcome an earlier run logged with the same key, the jobs still to do). A logged image
    counts only while its file is still there; a logged failure becomes `failure(cause, detail)`."""
    outcomes: dict[str, object] = {}
    todo: list[JobT] = []
    for job in jobs:
        cached = state.get(job.id)
        if cached and cached[0] == job.key and cached[1] == "ok" and job.dest.is_file():
            outcomes[job.id] = (int(cached[2]), int(cached[3]))
        elif cached and cached[0] == job.key and cached[1] == "fail":
            outcomes[job.id] = failure(cached[2], cached[3])
        else:
            todo.append(job)
    return outcomes, todo


@contextmanager
def worker_pool(pool: Pool | None) -> Iterator[Pool | None]:
    """Hand out `pool` (None: work in this process); on an error or Ctrl-C terminate it at once instead of
    waiting for queued tasks, else close and join it."""
    try:
        yield pool
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    if pool is not None:
        pool.close()
        pool.join()


def logged_outcomes(
    batches: Iterable[list[tuple[str, object]]],
    keys: dict[str, str],
    log: TextIO,
    bar: Any,
    keep: Callable[[object], bool] = lambda outcome: True,
) -> Iterator[tuple[str, object]]:
    """(job id, outcome) of every job of the workers' `batches`; each outcome that `keep` accepts is appended
    to the state `log` (under the job's key in `keys`), flushed and counted on the progress `bar` per batch."""
    for batch in batches:
        for job_id, outcome in batch:
            yield job_id, outcome
            if keep(outcome):
                log.write(state_line(job_id, keys[job_id], outcome))
        log.flush()
        bar.update(len(batch))
