"""Callbacks for training runs: a frequent, atomic `last.ckpt` and an images/s meter.

The PNG curves of a run are drawn by `texscribe.evaluation.plots.plot_training_curves`.

`LastCheckpoint` is what makes "run the same command again" resume: it rewrites
`checkpoints/last.ckpt` every N optimizer steps or M minutes (whichever comes first), after each
validation and epoch, at the last step, and when the run is interrupted (Ctrl-C, SIGTERM) once training has
started (an interrupt while the data loads or the checkpoint restores would save step 0 over a resumed
run's progress, so `last.ckpt` is then left as it was). Each write goes
to a temporary file first and is renamed over the old one, so a kill mid-write never corrupts it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

LAST = "last.ckpt"


class LastCheckpoint(Checkpoint):
    """Keep `<dirpath>/last.ckpt` fresh (see module docstring).

    Saves happen only where Lightning's loop state is consistent for resuming: after a training batch
    (periodic, or the last one when max_steps / max_time stops the run), after validation, and at the
    end of an epoch. (Not in `on_train_end`: by then a run stopped mid-epoch has already counted the
    epoch as finished.) Being a `Checkpoint`, Lightning runs it after the other callbacks, so it sees
    the stop request the `Timer` makes in the same batch. Add it after the best-model `ModelCheckpoint`:
    checkpoint callbacks run in list order, and last.ckpt must carry the best-model state (path and
    score) of the validation it follows, or a resume forgets the best checkpoint.
    """

    def __init__(
        self, dirpath: str | Path, every_n_steps: int | None = 500, every_minutes: float | None = 10.0
    ):
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps if every_n_steps and every_n_steps > 0 else None
        self.every_seconds = every_minutes * 60 if every_minutes and every_minutes > 0 else None
        self._last_time = time.monotonic()
        self._last_step = -1
        self._last_kind = ""
        self._training = False  # set once Lightning has restored a resumed run's state

    @property
    def path(self) -> Path:
        return self.dirpath / LAST

    @property
    def saved_step(self) -> int | None:
        """The global step this run last wrote to `path`; None before its first save (a resumed run's
        file then still holds where the previous segment stopped)."""
        return self._last_step if self._last_step >= 0 else None

    def save(self, trainer: L.Trainer, kind: str) -> None:
        """Atomic save; every rank must call it (the strategy gathers state), rank 0 writes.
        A second save at the same step is skipped unless it follows validation (new metrics, best model)."""
        if trainer.global_step == self._last_step and kind != "validation" and self.path.exists():
            return
        tmp = self.dirpath / (LAST + ".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier()
        self._last_time, self._last_step, self._last_kind = time.monotonic(), trainer.global_step, kind

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training = True

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        step = trainer.global_step
        due = bool(self.every_n_steps and step % self.every_n_steps == 0)
        due = due or bool(self.every_seconds and time.monotonic() - self._last_time >= self.every_seconds)
        due = due or (0 < trainer.max_steps <= step) or trainer.should_stop
        if trainer.strategy.broadcast(due):  # rank 0 decides (the time trigger differs between ranks)
            self.save(trainer, "batch")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (
            not trainer.sanity_checking and trainer.state.fn.value == "fit"
        ):  # not `trainer.validate` after fit
            self.save(trainer, "validation")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer, "epoch")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, KeyboardInterrupt | SIGTERMException):
            return
        if not self._training:  # still building data or restoring: the state is not the run's, keep last.ckpt
            log.info("interrupted before training started: %s left as it was", self.path)
            return
        log.info("interrupted at step %d: saving %s", trainer.global_step, self.path)
        self.save(trainer, "interrupt")


class ImagesPerSecond(L.Callback):
    """Logs `train/images_per_s`: training images (all ranks) per wall-clock second, per logging window."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._images = 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int
    ) -> None:
        if self._start is None:
            self._start, self._images = time.monotonic(), 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, out: Any, batch: Any, idx: int
    ) -> None:
        self._images += len(batch) * trainer.world_size
        elapsed = time.monotonic() - (self._start or time.monotonic())
        if (trainer.global_step % trainer.log_every_n_steps == 0) and elapsed > 0:
            pl_module.log("train/images_per_s", self._images / elapsed, on_step=True, batch_size=len(batch))
            self._start = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = None  # do not count validation time as training time
