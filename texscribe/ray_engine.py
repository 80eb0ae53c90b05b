"""Batch recognition on a Ray cluster: a pool of Ray actors, each holding one loaded model.

    from texscribe.ray_engine import predict_on_ray
    for outcome in predict_on_ray(["scans/"], workers=4):   # files, folders, globs, @lists
        print(outcome.source, outcome.prediction.latex if outcome.prediction else outcome.error)

Each actor loads the model once and recognises chunks of inputs with `inference.iter_predictions`, the
function local mode uses, so predictions and the reasons for skipped images are the same as local
mode's. The driver keeps two chunks in flight per actor and yields one `Outcome` per input, in input
order (or as chunks finish, `ordered=False`, each carrying its input `index`).

A worker that dies (killed, out of memory, its node lost) is restarted by Ray, which loads the model
again; the chunks it held are sent again, up to `max_retries` times each, and only their finished
results are kept, so no input is lost or reported twice. A chunk that kills its worker on every try is
reported as skipped, item by item, and the job goes on.

Without an address a private Ray instance is started on loopback only (every Ray server binds
127.0.0.1) and stopped at the end; `address="auto"` or `"HOST:PORT"` joins a running cluster, where
every node needs texscribe (and the model file, unless it is the shipped `default`) and payloads must
be readable there: paths on a shared file system, or bytes. Ray is optional: `pip install
"texscribe[ray]"`; nothing else in texscribe imports this module.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from texscribe.errors import ConfigError, ModelLoadError, TexscribeError
from texscribe.inference import Outcome, iter_predictions, load_model, resolve_model_path
from texscribe.inputs import expand_inputs, read_manifest

log = logging.getLogger(__name__)

IN_FLIGHT_PER_WORKER = 2  # chunks queued on each actor: one decoding, one waiting (no idle gap)
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # chunks of paths and their results are small


def import_ray(local: bool) -> Any:
    """Import Ray; for a private local instance, first make Ray treat this machine as loopback-only."""
    if local:
        # Ray's own switch (read when Ray is imported, and by the processes it starts): the node's address
        # becomes 127.0.0.1 and every Ray server binds it, not all interfaces
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "the Ray engine needs Ray, which is not installed: pip install 'texscribe[ray]'"
        ) from exc
    if local:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # in case Ray was imported before the switch was set
    return ray


class RecognizerWorker:
    """A Ray actor's state: one `Recognizer`, loaded when the actor starts (again after a restart)."""

    def __init__(
        self,
        model: Any,
        backend: str,
        device: str,
        threads: int,
        load_workers: int,
        data_overrides: list[str],
    ) -> None:
        self.recognizer = load_model(
            model, device=device, backend=backend, num_threads=threads, data_overrides=data_overrides
        )
        self.load_workers = load_workers

    def pid(self) -> int:
        return os.getpid()

    def predict(self, chunk: list[tuple[int, str, Any]], decode_kwargs: dict[str, Any]) -> list[Outcome]:
        """[(input index, source, payload)] -> one Outcome per item, with the input index."""
        outcomes = iter_predictions(
            self.recognizer,
            [(source, payload) for _, source, payload in chunk],
            workers=self.load_workers,
            chunk_size=max(1, len(chunk)),
            **decode_kwargs,
        )
        return [Outcome(chunk[o.index][0], o.source, o.prediction, o.error) for o in outcomes]


class RayRecognizerPool:
    """`workers` Ray actors, each with the model loaded; `predict` spreads inputs over them.

    model: shipped name, model file or ONNX folder (a list: an ensemble), as `load_model` takes it.
    threads: torch CPU threads per worker (Ray reserves that many CPUs for each). load_workers: image
    loading threads per worker. address: None (a private local Ray on loopback), "auto" or "HOST:PORT".
    max_retries: how many times a chunk is sent again after its worker died. start_timeout: seconds to
    wait for the workers to start (a cluster without free CPUs would otherwise wait forever).
    data_overrides: `data.KEY=VALUE` reading settings, as `load_model` takes them.
    """

    def __init__(
        self,
        model: Any = "default",
        *,
        workers: int = 2,
        threads: int = 1,
        load_workers: int = 1,
        backend: str = "torch",
        device: str = "cpu",
        address: str | None = None,
        max_retries: int = 3,
        start_timeout: float = 600.0,
        data_overrides: Sequence[str] = (),
    ) -> None:
        for name, value, low in (("workers", workers, 1), ("threads", threads, 1),
                                 ("load_workers", load_workers, 1), ("max_retries", max_retries, 0)):  # fmt: skip
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name}: must be an integer >= {low}, got {value!r}")
        names = [model] if isinstance(model, (str, os.PathLike)) else list(model)
        for name in names:  # a missing model file fails here, in local mode's words, not in every actor
            if backend == "torch":
                resolve_model_path(name)
            elif not os.path.isdir(name):
                raise ModelLoadError(f"{name}: no such ONNX export folder")
        self.max_retries = max_retries
        self.resent = 0  # chunks sent again after their worker died (over this pool's life)
        self.ray = ray = import_ray(local=address is None)
        self._started_ray = False
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=max(os.cpu_count() or 1, workers * threads), include_dashboard=False,
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, log_to_driver=False,
                         logging_level=logging.WARNING)  # fmt: skip
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            self._started_ray = True
        # Ray restarts a dead actor (running __init__, so the model loads again) as often as it dies;
        # the driver, not Ray, resends the dead actor's chunks, so it can count the tries per chunk
        actor = ray.remote(num_cpus=threads, max_restarts=-1, max_task_retries=0)(RecognizerWorker)
        model_arg = names[0] if len(names) == 1 else names
        self.actors = [
            actor.remote(model_arg, backend, device, threads, load_workers, list(data_overrides))
            for _ in range(workers)
        ]
        try:
            ray.get([a.pid.remote() for a in self.actors], timeout=start_timeout)
        except ray.exceptions.GetTimeoutError as exc:
            free = ray.available_resources().get("CPU", 0)
            self.close()
            raise TexscribeError(
                f"Ray could not start {workers} workers of {threads} CPU(s) each within {start_timeout:.0f} s "
                f"(CPUs free in the cluster: {free}); ask for fewer workers or threads"
            ) from exc
        except ray.exceptions.RayActorError as exc:
            self.close()
            raise ModelLoadError(f"Ray workers could not load the model: {exc}") from exc

    def __enter__(self) -> RayRecognizerPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def worker_pids(self, timeout: float = 120.0) -> list[int]:
        """Process ids of the workers (a new one after Ray restarts a worker; waits for restarts)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.ray.get([a.pid.remote() for a in self.actors])
            except self.ray.exceptions.ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        """Stop the workers, and the local Ray instance if this pool started it."""
        for a in getattr(self, "actors", []):
            self.ray.kill(a)
        self.actors = []
        if self._started_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self._started_ray = False

    def predict(
        self,
        items: Sequence[tuple[str, Any]],
        *,
        chunk_size: int = 32,
        ordered: bool = True,
        **decode_kwargs: Any,
    ) -> Iterator[Outcome]:
        """Recognise `(source, payload)` items (payload: path, bytes, array); one `Outcome` per item.

        decode_kwargs: beam, batch_size, max_len, r2l (see `Recognizer.predict_images`). Within a chunk
        images are batched by size as in local mode (`chunk_size` plays the part of its chunk)."""
        if not self.actors:
            raise TexscribeError("this Ray pool is closed")
        chunks = [
            [(i, items[i][0], items[i][1]) for i in range(start, min(start + chunk_size, len(items)))]
            for start in range(0, len(items), chunk_size)
        ]
        schedule = _Schedule(self, len(chunks))
        finished: dict[int, list[Outcome]] = {}
        next_out = 0
        for k, result in schedule.run(chunks, decode_kwargs):
            if result is None:  # its worker died on every try: report its items, go on
                result = [Outcome(i, source, None, f"the Ray worker died {schedule.tries[k]} times recognising "
                                  f"it: {schedule.last_error[k]}") for i, source, _ in chunks[k]]  # fmt: skip
            if not ordered:
                yield from result
                continue
            finished[k] = result
            while next_out in finished:
                yield from finished.pop(next_out)
                next_out += 1


class _Schedule:
    """Feeds chunks to a pool's actors, IN_FLIGHT_PER_WORKER at a time each, and resends the chunks of
    a worker that died. A dead worker takes no new chunk until Ray has restarted it (a probe call
    answers); its chunks count one try each, however long the restart takes."""

    def __init__(self, pool: RayRecognizerPool, n_chunks: int) -> None:
        self.pool, self.ray = pool, pool.ray
        self.tries = [0] * n_chunks
        self.last_error = [""] * n_chunks
        self.incarnation = [0] * len(pool.actors)  # bumped when a worker is seen dead

    def run(self, chunks: list[list[Any]], decode_kwargs: dict[str, Any]) -> Iterator[tuple[int, Any]]:
        """Yield (chunk number, its outcomes), or (chunk number, None) once its tries are used up."""
        ray, actors = self.ray, self.pool.actors
        todo = deque(range(len(chunks)))
        slots = deque(w for w in range(len(actors)) for _ in range(IN_FLIGHT_PER_WORKER))
        running: dict[Any, tuple[int, int, int]] = {}  # ref -> (chunk, worker, incarnation)
        probes: dict[Any, int] = {}  # ref of a pid() call -> worker being restarted
        dead: set[int] = set()  # workers Ray will not restart (their node is gone)
        while todo or running:
            while todo and slots:
                k, w = todo.popleft(), slots.popleft()
                self.tries[k] += 1
                running[actors[w].predict.remote(chunks[k], decode_kwargs)] = (k, w, self.incarnation[w])
            if not running and not probes:
                raise TexscribeError(f"all {len(actors)} Ray workers are gone; {len(todo)} chunk(s) not done")
            (ref,), _ = ray.wait([*running, *probes], num_returns=1)
            if ref in probes:
                w = probes.pop(ref)
                try:
                    ray.get(ref)
                    slots.extend([w] * IN_FLIGHT_PER_WORKER)  # restarted, model loaded again
                except ray.exceptions.ActorDiedError as exc:
                    dead.add(w)
                    log.warning("Ray worker %d is gone for good: %s", w, _short(exc))
                except ray.exceptions.RayActorError:
                    time.sleep(0.2)  # still restarting
                    probes[actors[w].pid.remote()] = w
                continue
            k, w, incarnation = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                self.last_error[k] = _short(exc)
                if incarnation == self.incarnation[w] and w not in dead:  # first news of this death
                    self.incarnation[w] += 1
                    slots = deque(x for x in slots if x != w)
                    probes[actors[w].pid.remote()] = w
                if self.tries[k] <= self.pool.max_retries:
                    log.warning(
                        "Ray worker %d died on chunk %d (try %d); sending it again", w, k, self.tries[k]
                    )
                    self.pool.resent += 1
                    todo.appendleft(k)
                else:
                    yield k, None
                continue
            if incarnation == self.incarnation[w]:
                slots.append(w)
            yield k, result


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def predict_on_ray(
    inputs: Sequence[str] | Sequence[tuple[str, Any]] = (),
    model: Any = "default",
    *,
    manifests: Sequence[str] = (),
    workers: int = 2,
    threads: int = 1,
    load_workers: int = 1,
    backend: str = "torch",
    device: str = "cpu",
    address: str | None = None,
    max_retries: int = 3,
    start_timeout: float = 600.0,
    chunk_size: int = 32,
    ordered: bool = True,
    **decode_kwargs: Any,
) -> Iterator[Outcome]:
    """Recognise many images on Ray; one `Outcome` per input, in input order (see `RayRecognizerPool`).

    inputs: input specs as `texscribe predict` takes them (files, folders, globs, `@list.txt`), or
    `(source, payload)` pairs (payload: path, encoded bytes or array). manifests: TSV/CSV files whose
    rows are added after the inputs, keyed by their id column when they have one. Specs that match
    nothing and unusable manifest rows are yielded first, as skipped Outcomes with index -1."""
    items: list[tuple[str, Any]] = []
    problems: list[tuple[str, str]] = []
    for x in inputs:
        if isinstance(x, (str, os.PathLike)):
            paths, spec_problems = expand_inputs([os.fspath(x)])
            items += [(p, p) for p in paths]
            problems += spec_problems
        else:
            items.append(x)
    for manifest in manifests:
        rows, bad_rows = read_manifest(manifest)
        items += rows
        problems += bad_rows
    for where, reason in problems:
        yield Outcome(-1, where, None, reason)
    if not items:
        return
    with RayRecognizerPool(model, workers=workers, threads=threads, load_workers=load_workers,
                           backend=backend, device=device, address=address,
                           max_retries=max_retries, start_timeout=start_timeout) as pool:  # fmt: skip
        yield from pool.predict(items, chunk_size=chunk_size, ordered=ordered, **decode_kwargs)
