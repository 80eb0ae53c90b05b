"""Short real training runs on ~64 CROHME samples: the loss falls, a killed run resumes where it stopped
(same batches, global_step continues), the best model is exported, and the CLI drives it all."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from texscribe.config import Config, load_config

# small images keep a CPU step well under a second on the tiny preset
SMALL = [
    "data.img_max_height=48",
    "data.img_max_width=192",
    "data.batch_max_size=8",
    "data.batch_max_pixels=60000",
    "data.augment={}",
    "optim.warmup_steps=5",
    "train.log_every_n_steps=1",
]


@pytest.fixture(scope="module")
def crohme64(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """64 CROHME train samples + 16 of CROHME 2014, prepared by the real `prepare`."""
    from texscribe.data.prepare import prepare

    root = tmp_path_factory.mktemp("crohme64")
    zip_path = shared_data / "crohme" / "crohme_offline.zip"
    prepare([f"{zip_path}:train"], root / "train", limit=64, workers=1, progress=False)
    prepare(
        [f"{zip_path}:2014"], root / "val", limit=16, workers=1, progress=False, vocab_from=root / "train"
    )
    return root / "train", root / "val"


def config(train_dir: Path, out: Path, *overrides: str, val: Path | None = None) -> Config:
    extra = [f"data.val={val}"] if val else []
    return load_config(
        "tiny", [f"data.train=[{train_dir}]", f"train.out_dir={out}", *SMALL, *extra, *overrides]
    )


class RecordBatches(L.Callback):
    """Which sample ids each optimizer step trained on, and the loss."""

    def __init__(self) -> None:
        self.ids: dict[int, list[str]] = {}
        self.loss: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.ids[trainer.global_step] = list(batch.sample_ids)
        self.loss[trainer.global_step] = float(outputs["loss"])


@pytest.mark.slow
@pytest.mark.shared
def test_tiny_preset_learns_and_exports(crohme64: tuple[Path, Path], tmp_path: Path) -> None:
    from texscribe.checkpoint import read_model_file
    from texscribe.training import train

    train_dir, val_dir = crohme64
    rec = RecordBatches()
    started = time.perf_counter()
    result = train(
        config(
            train_dir, tmp_path, "train.max_steps=30", "train.max_epochs=100", "optim.lr=0.003", val=val_dir
        ),
        callbacks=[rec],
    )
    elapsed = time.perf_counter() - started
    assert result.global_step == 30
    losses = [rec.loss[s] for s in sorted(rec.loss)]
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < first - 0.5, f"loss did not fall: first steps {first:.3f}, last steps {last:.3f}"
    # validation ran each epoch on the 16 val samples and was recorded
    assert result.best_metrics["count"] == 16 and 0.0 <= result.best_metrics["val/exprate"] <= 1.0
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    model = read_model_file(result.model_file)
    assert model.meta["data"]["train"] == [str(train_dir)] and model.meta["global_step"] == 30
    assert model.meta["best_metrics"]["val/exprate"] == result.best_metrics["val/exprate"]
    assert {p.name for p in result.curves} == {"loss.png", "exprate.png", "lr.png"}
    assert (result.run_dir / "logs" / "tensorboard").is_dir()
    print(f"tiny: 30 steps in {elapsed:.1f} s, loss {first:.2f} -> {last:.2f}")


@pytest.mark.slow
@pytest.mark.shared
def test_resume_continues_same_batches(crohme64: tuple[Path, Path], tmp_path: Path) -> None:
    """A run stopped mid-epoch (step 5), then at an epoch end (after validation), then resumed to step 14
    trains on exactly the batches of an uninterrupted 14-step run, and its step counter continues."""
    from texscribe.training import train

    train_dir, val_dir = crohme64
    straight = RecordBatches()
    train(
        config(train_dir, tmp_path / "a", "train.max_steps=14", "train.max_epochs=100"), callbacks=[straight]
    )

    pieces = RecordBatches()
    out = tmp_path / "b"
    first = train(
        config(train_dir, out, "train.max_steps=5", "train.max_epochs=100", val=val_dir), callbacks=[pieces]
    )
    assert first.global_step == 5
    ckpt = torch.load(first.last_checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 5
    second = train(config(train_dir, out, "train.max_epochs=1", val=val_dir), callbacks=[pieces])
    per_epoch = second.global_step
    assert 5 < per_epoch < 14 and second.epochs == 1.0  # resumed, finished epoch 0 (and validated it)
    assert second.best_metrics["step"] == per_epoch
    third = train(
        config(train_dir, out, "train.max_steps=14", "train.max_epochs=100", val=val_dir), callbacks=[pieces]
    )
    assert third.global_step == 14 and third.run_dir == first.run_dir and third.epochs > 1.0
    assert pieces.ids == straight.ids
    assert len(list((out / "tiny" / "logs" / "csv").glob("segment-*"))) == 3


@pytest.mark.slow
@pytest.mark.shared
def test_resume_keeps_the_best_checkpoint(crohme64: tuple[Path, Path], tmp_path: Path) -> None:
    """Issue 19 item 2: last.ckpt records the best checkpoint of the validation it follows, so a resumed
    run keeps one best-*.ckpt and exports the weights whose metrics model.pt names."""
    from texscribe.checkpoint import read_model_file
    from texscribe.training import train

    train_dir, val_dir = crohme64
    every2 = ["train.val_every_n_steps=2", "train.max_epochs=100"]
    first = train(config(train_dir, tmp_path, "train.max_steps=2", *every2, val=val_dir))
    ckpt = torch.load(first.last_checkpoint, map_location="cpu", weights_only=False)
    (best_state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert best_state["best_model_path"] == str(first.best_checkpoint) and first.best_checkpoint.is_file()
    assert float(best_state["best_model_score"]) == first.best_metrics["val/exprate"]

    second = train(config(train_dir, tmp_path, "train.max_steps=4", *every2, val=val_dir))
    assert second.global_step == 4 and len(second.best_metrics) > 0
    assert len(list((second.run_dir / "checkpoints").glob("best-*.ckpt"))) == 1
    meta = read_model_file(second.model_file).meta
    assert meta["checkpoint_step"] == meta["best_metrics"]["step"] == second.best_metrics["step"]


class InterruptAt(L.Callback):
    """Raises KeyboardInterrupt (what Ctrl-C raises) in the named hook: `on_fit_start` comes before
    Lightning restores a resumed run, `on_train_batch_end` after training has started."""

    def __init__(self, hook: str) -> None:
        setattr(self, hook, self._interrupt)

    def _interrupt(self, *args: object) -> None:
        raise KeyboardInterrupt


@pytest.mark.slow
@pytest.mark.shared
def test_interrupt_before_the_restore_keeps_last_checkpoint(
    crohme64: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while a resumed run is still loading must not save its blank step-0 state over last.ckpt
    (it did: a 5-step run's progress was replaced by step 0); once training runs, Ctrl-C still saves."""
    from texscribe.training import train

    train_dir, _ = crohme64
    first = train(config(train_dir, tmp_path, "train.max_steps=5", "train.max_epochs=100"))
    before = first.last_checkpoint.read_bytes()
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        train(config(train_dir, tmp_path, "train.max_steps=9", "train.max_epochs=100"),
              callbacks=[InterruptAt("on_fit_start")])  # fmt: skip
    assert first.last_checkpoint.read_bytes() == before
    assert "interrupted: nothing new was saved" in capsys.readouterr().out
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        train(config(train_dir, tmp_path, "train.max_steps=9", "train.max_epochs=100"),
              callbacks=[InterruptAt("on_train_batch_end")])  # fmt: skip
    ckpt = torch.load(first.last_checkpoint, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6  # resumed at 5, interrupted after its first new step, saved
    assert "interrupted: progress up to step 6 is in" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.shared
def test_sigterm_to_the_process_group_saves_last_checkpoint(
    crohme64: tuple[Path, Path], tmp_path: Path
) -> None:
    """`kill -- -PGID` (a job stopped as a whole: main process and DataLoader workers) must save the step the
    run reached. It did not: the worker died of the SIGTERM, the main process raised "DataLoader worker is
    killed by signal: Terminated" instead of Lightning's SIGTERM exit, and every step since the last
    periodic save was lost (minutes of a long run)."""
    train_dir, _ = crohme64
    code = "import sys; from texscribe.config import load_config; from texscribe.training import train; " \
           "train(load_config('tiny', sys.argv[1:]))"  # fmt: skip
    overrides = [f"data.train=[{train_dir}@30]", f"train.out_dir={tmp_path}", *SMALL, "data.num_workers=1",
                 "train.max_steps=100000", "train.max_epochs=1", "train.progress_bar=false"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code, *overrides], start_new_session=True, **PIPES)
    metrics = tmp_path / "tiny" / "logs" / "csv" / "segment-000" / "metrics.csv"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 8):  # a few steps trained
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    last = tmp_path / "tiny" / "checkpoints" / "last.ckpt"
    assert last.is_file(), err[-2000:]  # one epoch is 270 steps: nothing else saved it
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert step >= 3 and "killed by signal" not in err
    assert f"interrupted: progress up to step {step} is in {last}" in out


@pytest.mark.slow
@pytest.mark.shared
def test_resume_never_and_init_weights(crohme64: tuple[Path, Path], tmp_path: Path) -> None:
    from texscribe.checkpoint import read_model_file
    from texscribe.training import train

    train_dir, _ = crohme64
    base = train(config(train_dir, tmp_path, "train.max_steps=2", "train.bidirectional=true"))
    fresh = train(config(train_dir, tmp_path, "train.max_steps=2"), resume="never")
    assert fresh.run_dir.name == "tiny-2" and fresh.global_step == 2
    tuned = train(
        config(train_dir, tmp_path, "train.max_steps=1", "train.run_name=ft"),
        weights_only_from=str(base.model_file),
    )
    assert tuned.global_step == 1  # fresh optimizer and counters, weights from the model file
    assert read_model_file(tuned.model_file).vocab.itos == read_model_file(base.model_file).vocab.itos


@pytest.mark.slow
@pytest.mark.shared
def test_init_weights_grows_the_vocabulary_by_new_tokens(crohme64: tuple[Path, Path], tmp_path: Path) -> None:
    """Weights trained on handwriting, continued on data with print tokens they never saw: the tokens get
    new ids after the old ones (not <unk>), and the model's vocabulary rows grow to match."""
    import shutil

    from texscribe.checkpoint import read_model_file
    from texscribe.data.prepare import prepare
    from texscribe.data.prepared import PreparedDataset
    from texscribe.training import train

    train_dir, _ = crohme64
    base = train(config(train_dir, tmp_path, "train.max_steps=1"))
    labels = tmp_path / "print_labels"
    labels.mkdir()
    for i, rec in enumerate(PreparedDataset.open(train_dir).records[:6]):
        shutil.copy(rec.image_path, labels / f"p{i}.png")
        (labels / f"p{i}.txt").write_text(r"x \in \mathbb { R } _ { " + str(i) + " }")
    prepare([str(labels)], tmp_path / "print", workers=1, progress=False)
    tuned = train(
        config(
            train_dir,
            tmp_path,
            "train.max_steps=1",
            "train.run_name=mixed",
            f"data.train=[{train_dir},{tmp_path / 'print'}]",
        ),
        weights_only_from=str(base.model_file),
    )
    old, new = read_model_file(base.model_file), read_model_file(tuned.model_file)
    n = len(old.vocab)
    assert new.vocab.itos[:n] == old.vocab.itos
    assert r"\mathbb" in new.vocab.itos[n:]
    rows = [k for k, v in new.state_dict.items() if v.ndim and v.shape[0] == len(new.vocab)]
    assert rows, "no vocabulary-sized tensor in the continued model"


@pytest.mark.slow
@pytest.mark.shared
def test_cli_train_prints_locations(crohme64: tuple[Path, Path], tmp_path: Path) -> None:
    train_dir, _ = crohme64
    cmd = [sys.executable, "-m", "texscribe.cli", "train", "--config", "tiny", "--train", str(train_dir),
           "--out", str(tmp_path), "--max-time", "00:00:05:00", "train.max_steps=2", *SMALL]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"run directory: {tmp_path / 'tiny'}" in proc.stdout
    assert "model file:" in proc.stdout and (tmp_path / "tiny" / "model.pt").is_file()
    bad = subprocess.run(
        [*cmd[: -len(SMALL) - 1], "optim.nme=sgd"], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and "optim.nme" in bad.stderr


# Run by every DDP rank (Lightning starts rank 1 by running this file again): texscribe's own train() with
# a callback that records the rank, the sample ids of each step and a digest of the final weights, and an
# audit hook that records every file this process creates, writes, renames or deletes under the run
# folder (torch.save to a path writes from C++, unseen, but texscribe and Lightning save to a temporary
# name and rename it, which is seen). Each process dumps its record to REPORTS/<pid>.json at exit.
DDP_DRIVER = """\
import atexit, hashlib, json, os, sys
from pathlib import Path

import lightning as L
import torch

from texscribe.config import load_config
from texscribe.training import train

out, reports, overrides = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), sys.argv[3:]
record = {"rank": None, "world_size": None, "node_rank": None, "writes": [], "ids": {}, "weights": None}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def under_out(path):
    if isinstance(path, (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(path))
        if path.startswith(str(out)):
            return path
    return None


def audit(event, args):
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITE_FLAGS)
        paths = [path] if writing else []
    elif event == "os.mkdir":
        paths = [] if os.path.exists(args[0]) else [args[0]]  # mkdir(exist_ok=True) of an existing folder
    elif event in ("os.rename", "os.link", "os.symlink"):
        paths = args[:2]
    elif event in ("os.remove", "os.rmdir", "os.truncate", "shutil.rmtree", "os.utime", "os.chmod"):
        paths = args[:1]
    else:
        return
    for p in paths:
        if (p := under_out(p)) is not None:
            record["writes"].append(f"{event} {os.path.relpath(p, out)}")


class Record(L.Callback):
    def setup(self, trainer, pl_module, stage):
        record.update(rank=trainer.global_rank, world_size=trainer.world_size, node_rank=trainer.node_rank)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        record["ids"][trainer.global_step] = list(batch.sample_ids)

    def on_fit_end(self, trainer, pl_module):
        digest = hashlib.sha256()
        for name, value in sorted(pl_module.model.named_parameters()):  # not BatchNorm's per-rank stats
            digest.update(name.encode() + value.detach().float().contiguous().numpy().tobytes())
        record["weights"] = digest.hexdigest()


atexit.register(lambda: (reports / f"{os.getpid()}.json").write_text(json.dumps(record)))
torch.set_num_threads(1)
sys.addaudithook(audit)
train(load_config("tiny", [f"train.out_dir={out}", *overrides]), callbacks=[Record()])
"""


PIPES = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("layout", ["one node, devices=2", "two nodes on loopback"])
def test_ddp_two_cpu_processes(crohme64: tuple[Path, Path], tmp_path: Path, layout: str) -> None:
    """DDP on CPU (gloo, loopback), two ranks, the tiny preset for 3 steps: either one node running both
    (`train.devices=2`) or two nodes of one process each (`train.num_nodes=2`, NODE_RANK 0 and 1, one
    MASTER_ADDR:MASTER_PORT rendezvous), as in the README's two-node launch. The ranks train on
    different batches, end with the same weights, rank 0 alone writes files, and the checkpoint and the
    exported model load."""
    from texscribe.checkpoint import export_checkpoint, read_checkpoint
    from texscribe.inference import load_model

    train_dir, val_dir = crohme64
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir()
    (tmp_path / "driver.py").write_text(DDP_DRIVER)
    args = [sys.executable, str(tmp_path / "driver.py"), str(out), str(reports), f"data.train=[{train_dir}]",
            f"data.val={val_dir}", "train.strategy=ddp", "train.accelerator=cpu", "train.max_steps=3",
            "train.max_epochs=100", "train.progress_bar=false", *SMALL]  # fmt: skip
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    if layout == "one node, devices=2":
        procs = [subprocess.Popen([*args, "train.devices=2"], env=env, **PIPES)]
    else:  # what each machine of a two-node job runs, here both on loopback
        node = [*args, "train.devices=1", "train.num_nodes=2"]
        procs = [subprocess.Popen(node, env={**env, "NODE_RANK": str(r)}, **PIPES) for r in (0, 1)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]

    records = sorted((json.loads(f.read_text()) for f in reports.glob("*.json")), key=lambda r: r["rank"])
    assert [(r["rank"], r["world_size"]) for r in records] == [(0, 2), (1, 2)]
    if layout == "two nodes on loopback":
        assert [r["node_rank"] for r in records] == [0, 1]
    rank0, rank1 = records
    # different batches at every step (each rank takes every second batch of the epoch)
    assert rank0["ids"].keys() == rank1["ids"].keys() == {"1", "2", "3"}
    for step in rank0["ids"]:
        assert not set(rank0["ids"][step]) & set(rank1["ids"][step]), f"step {step}: ranks shared samples"
    assert rank0["weights"] == rank1["weights"]  # gradients were averaged: one model on both ranks
    # rank 0 alone writes: rank 1 touches nothing in the run folder
    assert rank1["writes"] == [], rank1["writes"]
    written = {w.split(" ", 1)[1] for w in rank0["writes"]}
    assert {"tiny/config.yaml", "tiny/model.pt", "tiny/checkpoints/last.ckpt", "tiny/result.json"} <= written
    # the checkpoint and the exported model load, and the model reads an image
    run_dir = out / "tiny"
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 3
    image = next((val_dir / "images").glob("*.png"))
    for model_file in (
        run_dir / "model.pt",
        export_checkpoint(run_dir / "checkpoints" / "last.ckpt", tmp_path / "m.pt"),
    ):
        assert load_model(model_file).predict(image, max_len=5).latex is not None


# ------------------------------------------------------------------------------- learning-rate schedules
SCHEDULE = dict(warmup=10, total=110, milestones=[50, 80], gamma=0.1, floor=0.01)


def test_every_schedule_warms_up_linearly() -> None:
    from texscribe.training.lit_module import SCHEDULERS, lr_factor

    for kind in SCHEDULERS:
        ramp = [lr_factor(kind, s, **SCHEDULE) for s in range(10)]
        assert all(a < b for a, b in zip(ramp, ramp[1:])), kind
        assert ramp[0] <= 0.1 and abs(lr_factor(kind, 10, **SCHEDULE) - 1.0) < 1e-6, kind


def test_schedule_shapes() -> None:
    from texscribe.training.lit_module import lr_factor

    assert lr_factor("constant", 100, **SCHEDULE) == 1.0
    assert [lr_factor("multistep", s, **SCHEDULE) for s in (49, 50, 79, 80)] == pytest.approx(
        [1, 0.1, 0.1, 0.01]
    )
    cosine = [lr_factor("cosine", s, **SCHEDULE) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(cosine, cosine[1:]))
    assert cosine[50] == pytest.approx(0.01 + 0.99 * 0.5) and cosine[-1] == pytest.approx(0.01)
    assert lr_factor("onecycle", 0, **SCHEDULE) == pytest.approx(0.04)
    assert lr_factor("cosine", 10_000, **SCHEDULE) == pytest.approx(
        0.01
    )  # past the horizon: stays at the floor


def test_optimizer_and_scheduler_errors_name_the_key() -> None:
    from texscribe.errors import ConfigError
    from texscribe.latex import Vocab
    from texscribe.training.lit_module import LitImageToLatex

    vocab = Vocab(["x", "y"]).itos
    bad_opt = load_config("tiny", ["optim.name=lbfgs"])
    with pytest.raises(ConfigError, match="optim.name"):
        LitImageToLatex(bad_opt.to_dict(), vocab).configure_optimizers()
    bad_sched = load_config("tiny", ["optim.scheduler=linear"])
    with pytest.raises(ConfigError, match="optim.scheduler"):
        LitImageToLatex(bad_sched.to_dict(), vocab).configure_optimizers()


def test_corrupt_last_checkpoint_suggests_resume_never(tmp_path: Path) -> None:
    """Issue 19 item 9: a truncated last.ckpt says how to go on instead of only that it is unreadable."""
    from texscribe.errors import ModelLoadError
    from texscribe.training import train

    ckpt_dir = tmp_path / "tiny" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    config = load_config("tiny", [f"data.train=[{tmp_path / 'none'}]", f"train.out_dir={tmp_path}"])
    for junk in (b"PK\x03\x04 truncated by a full disk", b"garbage"):  # torch's messages run to pages
        (ckpt_dir / "last.ckpt").write_bytes(junk)
        with pytest.raises(ModelLoadError, match=r"last\.ckpt.*--resume never") as info:
            train(config)
        assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.shared
def test_accuracy_per_hour_scores_each_checkpoint_at_its_training_time(
    crohme64: tuple[Path, Path], tmp_path: Path
) -> None:
    """`train.snapshot_every_minutes` keeps snapshots/step-N.ckpt; benchmarks/accuracy_per_hour.py (issue
    15's learning curve) reads the training time each checkpoint of a resumed run stored and scores it on a
    prepared split, with a plot and the JSON."""
    from texscribe.training import train

    train_dir, val_dir = crohme64
    steps = ["train.max_steps=3", "train.max_epochs=100"]
    first = train(config(train_dir, tmp_path / "runs", *steps, "train.snapshot_every_minutes=0.00001"))
    assert sorted(p.name for p in (first.run_dir / "snapshots").iterdir()) == [
        "step-1.ckpt", "step-2.ckpt", "step-3.ckpt"
    ]  # fmt: skip
    train(config(train_dir, tmp_path / "runs", "train.max_steps=6", "train.max_epochs=100"))  # resumes
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy_per_hour.py"
    out = tmp_path / "curves"
    cmd = [sys.executable, str(bench), "--run", f"tiny run={first.run_dir}", "--data", str(val_dir),
           "--out", str(out), "--threads", "1", "--plot", str(out / "curve.png"), "--json", str(out / "c.json")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    points = json.loads((out / "c.json").read_text(encoding="utf-8"))["tiny run"]
    assert [p["step"] for p in points] == [1, 2, 3, 6]  # the snapshots, then last.ckpt of the resume
    hours = [p["hours"] for p in points]
    assert 0.0 < hours[0] < hours[1] < hours[2] < hours[3] < 0.5  # the resume added to the stored time
    assert all(p["n"] == 16 and 0.0 <= p["exp_rate"] <= p["le1"] <= p["le2"] <= 1.0 for p in points)
    assert (out / "curve.png").stat().st_size > 1000 and "ExpRate against training time" in proc.stdout
