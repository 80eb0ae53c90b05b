"""Batch recognition on a real local Ray instance (loopback): same outcomes as local mode, in input order,
and a worker killed mid-run loses and duplicates nothing. About 30-60 s on 2 cores (Ray starts once for
the in-process tests, once more for the CLI's private instance). Skipped where Ray is not installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serving_helpers import formula_png, make_tiny_model

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'texscribe[ray]')")

from texscribe.inference import iter_predictions, load_model  # noqa: E402
from texscribe.ray_engine import RayRecognizerPool, predict_on_ray  # noqa: E402

DECODE = {"beam": 1, "batch_size": 4, "max_len": 16}
CHUNK = 4


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """A tiny model and 48 inputs: formula images of different widths, a text file, a blank image, a
    missing file (the three bad ones spread through the list)."""
    root = tmp_path_factory.mktemp("ray")
    model = make_tiny_model(root / "tiny.pt")
    items = []
    texts = ["x+2", "y=1", "a-b", "x^2", "(x)", "1+1", "y_a", "2x=y"]
    for i in range(45):
        path = root / f"f{i:02d}.png"
        path.write_bytes(formula_png(texts[i % len(texts)], width=120 + 15 * (i % 9)))
        items.append((str(path), str(path)))
    (root / "notes.png").write_text("not an image")
    import cv2
    import numpy as np

    cv2.imwrite(str(root / "blank.png"), np.full((40, 90), 255, np.uint8))
    for at, name in ((5, "notes.png"), (20, "blank.png"), (33, "missing.png")):
        items.insert(at, (str(root / name), str(root / name)))
    return model, items


@pytest.fixture(scope="module")
def local_outcomes(job):
    model, items = job
    recognizer = load_model(model, num_threads=1)
    return [(o.index, o.source, o.prediction, o.error) for o in
            iter_predictions(recognizer, items, workers=1, chunk_size=CHUNK, **DECODE)]  # fmt: skip


@pytest.fixture(scope="module")
def local_ray():
    """One loopback Ray for the in-process tests, with a logical CPU to spare beside the pool's two
    workers (a pool started inside a running Ray joins it and leaves it running)."""
    from texscribe.ray_engine import import_ray

    import_ray(local=True)
    ray.init(num_cpus=3, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(job, local_ray):
    model, _ = job
    with RayRecognizerPool(model, workers=2, threads=1, max_retries=3, start_timeout=180) as p:
        yield p


def as_tuples(outcomes):
    return [(o.index, o.source, o.prediction, o.error) for o in outcomes]


def comparable(rows):
    """Everything but the timings (seconds differ from run to run)."""
    return [(i, s, p and (p.latex, p.tokens, round(p.score, 5)), e) for i, s, p, e in rows]


def test_cli_engine_ray_and_local_mode_never_imports_ray(job, tmp_path):
    model, items = job
    inputs = [p for _, p in items[:8]]  # includes notes.png (item 5)
    start = time.monotonic()
    ray_run = subprocess.run(
        [sys.executable, "-m", "texscribe.cli", "predict", "--engine", "ray", "--ray-workers", "2",
         "--model", str(model), "--max-len", "16", "--format", "tsv", "--no-progress", *inputs],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ray_run.returncode == 1, ray_run.stderr  # one input skipped
    assert "skipped" in ray_run.stderr and "notes.png" in ray_run.stderr
    rows = [line.split("\t")[0] for line in ray_run.stdout.splitlines()[1:]]
    assert rows == [p for p in inputs if not p.endswith("notes.png")]
    assert time.monotonic() - start < 120
    local = subprocess.run(
        [sys.executable, "-c", "import sys; from texscribe.cli import main; code = main(sys.argv[1:]); "
         "assert 'ray' not in sys.modules, 'local mode imported ray'; sys.exit(code)",
         "predict", "--model", str(model), "--max-len", "16", "--format", "tsv", "--no-progress", *inputs],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert local.returncode == 1, local.stderr
    assert local.stdout.splitlines()[1:] and [ln.split("\t")[:2] for ln in local.stdout.splitlines()] == [
        ln.split("\t")[:2] for ln in ray_run.stdout.splitlines()
    ]


def test_local_ray_listens_on_loopback_only(pool):
    nodes = ray.nodes()
    assert [n["NodeManagerAddress"] for n in nodes] == ["127.0.0.1"]


def test_same_outcomes_as_local_mode_in_input_order(pool, job, local_outcomes):
    _, items = job
    got = as_tuples(pool.predict(items, chunk_size=CHUNK, **DECODE))
    assert [row[0] for row in got] == list(range(len(items)))
    assert comparable(got) == comparable(local_outcomes)
    errors = {Path(s).name: e for _, s, p, e in got if p is None}
    assert set(errors) == {"notes.png", "blank.png", "missing.png"}  # reported as local mode reports them


def test_killed_worker_loses_and_duplicates_nothing(pool, job, local_outcomes):
    _, items = job
    before = pool.worker_pids()
    resent = pool.resent
    outcomes = pool.predict(items, chunk_size=CHUNK, **DECODE)
    got = [next(outcomes)]  # the job is running: both workers hold chunks
    os.kill(before[0], signal.SIGKILL)
    got += list(outcomes)
    assert [o.index for o in got] == list(range(len(items)))  # each input once, in order
    assert comparable(as_tuples(got)) == comparable(local_outcomes)
    assert pool.resent > resent  # the dead worker's chunks were sent again ...
    after = pool.worker_pids()
    assert after[0] != before[0] and after[1] == before[1]  # ... and Ray restarted it (model reloaded)


def test_unordered_results_carry_their_index(pool, job, local_outcomes):
    _, items = job
    got = sorted(as_tuples(pool.predict(items, chunk_size=CHUNK, ordered=False, **DECODE)))
    assert comparable(got) == comparable(local_outcomes)


def test_predict_on_ray_takes_specs_and_manifests(job, pool, tmp_path):
    """The Python entry point: glob specs and a manifest keyed by id, on a pool of its own beside the
    module's (the private-Ray start and stop is the CLI test's)."""
    model, items = job
    folder = Path(items[0][1]).parent
    manifest = tmp_path / "m.tsv"
    manifest.write_text(f"id\timage\na1\t{folder / 'f00.png'}\nb2\t{folder / 'f01.png'}\n")
    outcomes = list(
        predict_on_ray(
            [str(folder / "f0*.png"), str(folder / "none-*.png")],
            model,
            manifests=[str(manifest)],
            workers=1,
            **DECODE,
        )  # fmt: skip
    )
    assert (outcomes[0].index, outcomes[0].error) == (-1, "pattern matches no files")
    sources = [o.source for o in outcomes[1:]]
    assert sources == [str(folder / f"f0{i}.png") for i in range(10)] + ["a1", "b2"]
    assert outcomes[1].prediction.latex == outcomes[-2].prediction.latex  # f00.png twice, same reading
    assert ray.is_initialized()  # it joined the running instance and left it to its owner
