"""`train(config)`: one training run, resumable, ending in a self-describing model file.

Run directory `<train.out_dir>/<train.run_name or config.name>/`:

    config.yaml               the resolved config of the run
    checkpoints/last.ckpt     rewritten every N steps / M minutes, each epoch, at the end, on Ctrl-C/SIGTERM
    checkpoints/best-*.ckpt   best `val/exprate` so far (when a val set is given)
    snapshots/step-N.ckpt     a copy of the whole state every `train.snapshot_every_minutes` (when set)
    logs/tensorboard/         TensorBoard events (`tensorboard --logdir <run dir>/logs`)
    logs/csv/segment-NNN/     Lightning CSV metrics, one segment per start/resume
    curves/{loss,exprate,lr}.png
    model.pt                  best weights + config + vocab (a model file: `texscribe.checkpoint`)
    result.json               what `TrainResult` holds

Resuming: `resume="auto"` continues from `checkpoints/last.ckpt` when it exists (so re-running the
same command resumes, mid-epoch, with the same batch order); `"never"` starts fresh in a new run
directory (`<name>-2`, ...) instead of overwriting; a path resumes from that checkpoint. Limits are
totals over the run: `max_steps`, `max_epochs` and `max_time` (the elapsed time is checkpointed), so
give a larger value to extend a finished run.

Multi-device: `train.strategy` / `train.devices` go to the Lightning Trainer (`ddp` on CPU uses gloo).
Each rank draws its own share of the size-bucketed batches (`SizeBucketBatchSampler` shards them),
validation decodes a shard per rank and the metric counts are summed across ranks.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from texscribe.checkpoint import (
    Weights,
    cast_weights,
    checkpoint_weights,
    export_checkpoint,
    read_checkpoint,
    read_weights,
    save_model_file,
)
from texscribe.config import Config, check_values
from texscribe.errors import ConfigError, ModelLoadError, TexscribeError

if TYPE_CHECKING:  # lightning is imported only when a run starts
    from texscribe.training.callbacks import LastCheckpoint

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"


@dataclass
class TrainResult:
    """What a run produced. Paths are None when the run did not create them."""

    run_dir: Path
    model_file: Path | None
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    global_step: int
    epochs: float  # optimizer steps / batches per epoch (a run stopped mid-epoch has a fraction)
    best_metrics: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0  # wall time inside fit (training + its validations), over all resumes
    curves: list[Path] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, indent=2)


def run_directory(config: Config, resume: str | None) -> Path:
    """`out_dir/name`; with resume="never" the first of `name`, `name-2`, ... without checkpoints."""
    base = Path(config.train.out_dir) / (config.train.run_name or config.name)
    if resume != "never":
        return base
    candidate, n = base, 1
    while (candidate / "checkpoints").exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX): bf16 matmuls then run about
    4-8x fp32 here; without it oneDNN emulates bf16 and mixed precision only costs."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = set(f.read().split())
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:  # no /proc (not Linux): fp32, the choice that is never slower
        return False


def resolve_precision(precision: str, accelerator: str) -> str:
    """`auto` -> bf16-mixed on a bf16-capable GPU, or on the CPU when it has native bf16 units; else 32-true."""
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _resume_path(resume: str | None, ckpt_dir: Path) -> Path | None:
    if resume in (None, "never"):
        return None
    if resume == "auto":
        last = ckpt_dir / "last.ckpt"
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise ConfigError(f"--resume {resume}: checkpoint not found (use auto, never, or a .ckpt path)")
    return path


def train(
    config: Config,
    *,
    resume: str | None = "auto",
    weights_only_from: str | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train (or resume) a model as configured; export the best weights to `<run dir>/model.pt`.

    resume: "auto" | "never" | a .ckpt path (see module docstring). weights_only_from: a model file or
    .ckpt whose weights (and vocabulary) start the run, with a fresh optimizer and schedule.
    callbacks: extra Lightning callbacks (custom logging, tests)."""
    import lightning as L

    from texscribe.data.datamodule import LatexDataModule
    from texscribe.training.lit_module import LitImageToLatex

    check_values(config)  # a Config built without load_config (finetune, the Python API) gets the same checks
    run_dir = run_directory(config, resume)
    ckpt_path = _resume_path(resume, run_dir / "checkpoints")
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    if config.data.size_buckets:  # k fixed batch shapes: cuDNN picks and caches the fastest kernels per shape
        torch.backends.cudnn.benchmark = True
    start = _starting_weights(config, ckpt_path, weights_only_from)
    datamodule = LatexDataModule(config, vocab=start.vocab if start else None)
    if start is not None and ckpt_path is None:
        start = _with_data_tokens(start, datamodule.train_sets, config)
        datamodule.vocab = start.vocab
    module = LitImageToLatex(config.to_dict(), datamodule.vocab.itos)
    if start is not None and ckpt_path is None:  # a resume restores its weights (and optimizer) in fit
        module.model.load_state_dict(cast_weights(start.state_dict, torch.float32))
        log.info("initialised weights from %s (fresh optimizer)", weights_only_from)

    trainer, last, timer, best_cb = _make_trainer(
        config, run_dir, datamodule.val_set is not None, callbacks or []
    )
    if trainer.is_global_zero:  # every DDP rank runs this function; only the first writes files
        _start_run_directory(config, run_dir, ckpt_path)
    finished, curves = _fit(trainer, module, datamodule, ckpt_path, last, run_dir)
    best_path = Path(best_cb.best_model_path) if best_cb and best_cb.best_model_path else None
    result = TrainResult(
        run_dir=run_dir,
        model_file=None,
        best_checkpoint=best_path,
        last_checkpoint=last.path if last.path.exists() else None,
        global_step=trainer.global_step,
        epochs=round(trainer.global_step / max(1, len(datamodule.train_dataloader())), 3),
        best_metrics=module.best_metrics(),
        train_seconds=round(timer.time_elapsed("train"), 1),
        curves=curves,
    )
    if trainer.is_global_zero and finished:
        result.model_file = _export_model_file(config, module, result, trainer.global_step)
        (run_dir / "result.json").write_text(result.to_json(), encoding="utf-8")
    return result


def _starting_weights(
    config: Config, ckpt_path: Path | None, weights_only_from: str | None
) -> Weights | None:
    """The weights a run starts from, checked against `config.model`: the resumed checkpoint's (their
    vocabulary is the run's), or `weights_only_from`'s, or None (fresh weights, vocabulary from the data)."""
    if ckpt_path is not None:
        try:
            weights = checkpoint_weights(read_checkpoint(ckpt_path))
        except ModelLoadError as exc:
            raise ModelLoadError(
                f"cannot resume: {exc}; start afresh with --resume never (new run directory) "
                "or resume from another .ckpt with --resume PATH"
            ) from exc
        if weights.model_config != asdict(config.model):
            raise ConfigError(
                f"{ckpt_path} holds a different model than config {config.name!r}; "
                "use --resume never (new run directory) or another train.run_name"
            )
        return weights
    if weights_only_from:
        weights = read_weights(weights_only_from)
        if weights.model_config != asdict(config.model):
            raise ConfigError(
                f"--init-weights {weights_only_from}: its model section differs from config {config.name!r}"
            )
        return weights
    return None


def _with_data_tokens(start: Weights, train_sets: Sequence[Any], config: Config) -> Weights:
    """`start` with its vocabulary grown by the training labels' tokens it lacks (new ids appended, old
    ids and rows unchanged; `models.vocab_growth`): a run started from weights of another domain (a
    handwriting model meeting print's `\\mathrm`) learns those tokens instead of reading them as <unk>."""
    from texscribe.models.registry import build_model
    from texscribe.models.vocab_growth import extended_vocab, grow_vocab

    labels = (rec.tokens for ds in train_sets for rec in ds.records)
    vocab, added = extended_vocab(start.vocab, labels)
    if not added:
        return start
    model = build_model(config.model, len(start.vocab))
    model.load_state_dict(cast_weights(start.state_dict, torch.float32))
    grow_vocab(model, len(vocab), seed=config.train.seed)
    print(f"vocabulary: {len(start.vocab)} -> {len(vocab)} tokens (new in the training labels: {len(added)})")
    return replace(start, state_dict=model.state_dict(), vocab=vocab)


def _start_run_directory(config: Config, run_dir: Path, ckpt_path: Path | None) -> None:
    """Write the run's resolved `config.yaml` and say where its checkpoints and logs go."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    print(
        f"run directory: {run_dir}\n  checkpoints: {run_dir / 'checkpoints'}\n"
        f"  logs: tensorboard --logdir {run_dir / 'logs'}"
    )
    if ckpt_path:
        print(f"  resuming from {ckpt_path}")


def _fit(
    trainer: Any, module: Any, datamodule: Any, ckpt_path: Path | None, last: LastCheckpoint, run_dir: Path
) -> tuple[bool, list[Path]]:
    """Run `trainer.fit` -> (finished, curve files). A run that finished between validations is validated
    once more (its final weights scored); the curves are plotted however the fit ended (rank 0 only)."""
    has_val = datamodule.val_set is not None
    curves: list[Path] = []
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        finished = trainer.state.status.value == "finished"
        stale = not module.val_history or module.val_history[-1]["step"] != trainer.global_step
        if finished and has_val and stale:  # e.g. stopped by max_time mid-epoch: score the final weights
            trainer.validate(module, datamodule=datamodule, verbose=False)
    finally:
        if trainer.state.status.value == "interrupted" and trainer.is_global_zero:
            print(f"interrupted: {_saved_progress(last, trainer.global_step)}")
        if trainer.is_global_zero:
            curves = _plot_curves(run_dir)
    return finished, curves


def _saved_progress(last: LastCheckpoint, reached: int) -> str:
    """What `last` (the run's `LastCheckpoint`) holds after an interrupt at step `reached`, as saved, not
    assumed: an interrupt that could not save (a crash rather than Ctrl-C/SIGTERM) leaves the step of the
    last periodic save, or nothing."""
    last_path, step = last.path, last.saved_step
    resume = "run the same command again to resume"
    if step is None:
        if last_path.exists():
            return f"nothing new was saved; {last_path} holds where the previous segment stopped; {resume}"
        return "nothing was saved"
    if step == reached:
        return f"progress up to step {step} is in {last_path}; {resume}"
    return f"step {reached} was reached, but {last_path} holds step {step}; {resume}"


def _plot_curves(run_dir: Path) -> list[Path]:
    """Loss, ExpRate and LR curves from every CSV log segment of the run (none when plotting fails)."""
    from texscribe.evaluation.plots import plot_training_curves

    csvs = sorted((run_dir / "logs" / "csv").glob("segment-*/metrics.csv"))
    try:
        return plot_training_curves(csvs, run_dir / "curves")
    except (OSError, ValueError) as exc:
        log.warning("could not plot curves: %s", exc)
        return []


def _make_trainer(
    config: Config, run_dir: Path, has_val: bool, extra: list[Any]
) -> tuple[Any, Any, Any, Any]:
    """The Lightning Trainer with its callbacks and loggers -> (trainer, last, timer, best-checkpoint callback)."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, Timer
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    from texscribe.training.callbacks import ImagesPerSecond, LastCheckpoint

    tc = config.train
    ckpt_dir = run_dir / "checkpoints"
    last = LastCheckpoint(ckpt_dir, tc.checkpoint_every_n_steps, tc.checkpoint_every_minutes)
    timer = Timer(duration=tc.max_time, interval="step", verbose=False)  # elapsed time is checkpointed
    callbacks = [timer, LearningRateMonitor(logging_interval="step"), ImagesPerSecond(), *extra]
    best_cb = None
    if has_val:
        best_cb = ModelCheckpoint(
            dirpath=ckpt_dir, filename="best-epoch{epoch}-step{step}", auto_insert_metric_name=False,
            monitor="val/exprate", mode="max", save_top_k=1, enable_version_counter=False,
            save_on_train_epoch_end=False,
        )  # fmt: skip
        callbacks.append(best_cb)
        if tc.early_stop_patience:
            callbacks.append(
                EarlyStopping(monitor="val/exprate", mode="max", patience=tc.early_stop_patience)
            )
    if tc.snapshot_every_minutes:  # curve points and weights to average; full state: the Timer's time too
        callbacks.append(
            ModelCheckpoint(
                dirpath=run_dir / "snapshots",
                filename="step-{step}",
                auto_insert_metric_name=False,
                train_time_interval=timedelta(minutes=tc.snapshot_every_minutes),
                save_top_k=-1,
                enable_version_counter=False,
                save_on_train_epoch_end=False,
            )
        )
    # Last: Lightning runs checkpoint callbacks in list order, so last.ckpt then holds the best-checkpoint
    # state of the validation it follows, and a resume keeps (and later replaces) that best-*.ckpt.
    callbacks.append(last)
    segment = len(list((run_dir / "logs" / "csv").glob("segment-*")))  # CSVLogger would overwrite an old file
    loggers = [
        TensorBoardLogger(save_dir=run_dir / "logs", name="", version="tensorboard", default_hp_metric=False),
        CSVLogger(save_dir=run_dir / "logs" / "csv", name="", version=f"segment-{segment:03d}"),
    ]
    try:
        trainer = L.Trainer(
            accelerator=tc.accelerator,
            devices=tc.devices,
            num_nodes=tc.num_nodes,
            strategy=tc.strategy,
            precision=resolve_precision(tc.precision, tc.accelerator),
            max_epochs=tc.max_epochs,
            max_steps=tc.max_steps,
            gradient_clip_val=tc.grad_clip or None,
            check_val_every_n_epoch=None if tc.val_every_n_steps else tc.val_every_n_epochs,
            val_check_interval=tc.val_every_n_steps or None,
            limit_val_batches=None if has_val else 0,
            num_sanity_val_steps=1 if has_val else 0,
            log_every_n_steps=tc.log_every_n_steps,
            enable_progress_bar=tc.progress_bar,
            callbacks=callbacks,
            logger=loggers,
            enable_checkpointing=True,  # LastCheckpoint (and ModelCheckpoint with a val set)
            default_root_dir=run_dir,
            use_distributed_sampler=False,  # SizeBucketBatchSampler shards batches itself
        )
    except (MisconfigurationException, ModuleNotFoundError, ValueError) as exc:  # Lightning refused a setting
        raise ConfigError(
            f"train.accelerator={tc.accelerator!r}, devices={tc.devices!r}, num_nodes={tc.num_nodes!r}, "
            f"strategy={tc.strategy!r}, "
            f"precision={tc.precision!r}: {' '.join(str(exc).split())}"
        ) from exc
    return trainer, last, timer, best_cb


def _export_model_file(config: Config, module: Any, result: TrainResult, global_step: int) -> Path | None:
    """Write `<run dir>/model.pt` from the best weights: the best checkpoint, or the weights in memory
    when they are the best (validated at the final step) or no checkpoint holds better ones."""
    meta = {
        "data": {"train": list(config.data.train), "val": config.data.val},
        "global_step": global_step,
        "epochs": result.epochs,
        "best_metrics": result.best_metrics,
        "train_seconds": result.train_seconds,
        "hardware": hardware(),
        "run_dir": str(result.run_dir),
    }
    out = result.run_dir / MODEL_FILE
    best_is_final = result.best_metrics.get("step") == global_step
    if result.best_checkpoint is None or best_is_final:
        meta = {"checkpoint": "final weights", "checkpoint_step": global_step, **meta}
        return save_model_file(out, config, module.vocab, module.evaluated_model().state_dict(), meta)
    try:
        return export_checkpoint(result.best_checkpoint, out, meta)
    except TexscribeError as exc:
        log.error("export of %s failed: %s", result.best_checkpoint, exc)
        return None
