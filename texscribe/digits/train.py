"""A plain torch training loop for the digit models: epochs, early stopping on the validation split.

Speed on a small CPU comes from three things: the whole dataset lives in one tensor (batches are
index gathers, no DataLoader workers), convolutions run channels-last under bf16 autocast where the
CPU has native bf16 (weights, optimizer and batch-norm stay fp32), and augmentation is one
`grid_sample` per batch. Evaluation always runs in fp32.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from texscribe.digits.augment import AugmentSettings, random_warp
from texscribe.digits.data import MnistSplits
from texscribe.digits.models import build_model
from texscribe.errors import TexscribeError

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "onecycle", "cosine")
WARMUP = 0.15  # fraction of a onecycle run spent warming up
TRACE_EVERY = 25  # steps per point of the training-loss trace


@dataclass
class TrainSettings:
    """One training run. `patience`: stop after that many epochs without a better validation score
    (accuracy, ties broken by loss); None trains all `epochs`. `max_minutes` (None or 0: none) is a
    wall-clock budget: the learning-rate schedule is stretched or cut to it (see `train`).
    `bf16=None` uses bf16 autocast when the CPU supports it natively."""

    model: str = "best"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    label_smoothing: float = 0.0
    augment: AugmentSettings | None = None
    patience: int | None = None
    max_minutes: float | None = None
    bf16: bool | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise TexscribeError(
                f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}"
            )
        if self.schedule not in SCHEDULES:
            raise TexscribeError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise TexscribeError(
                f"need epochs >= 1, batch_size >= 1, lr > 0; got {self.epochs}, {self.batch_size}, {self.lr}"
            )


# Default recipe per architecture; CLI flags override single fields with `dataclasses.replace`.
RECIPES: dict[str, TrainSettings] = {
    "cnn": TrainSettings(model="cnn", epochs=15, optimizer="adam", lr=1e-3, patience=3),
    "lenet": TrainSettings(model="lenet", epochs=20, optimizer="adam", lr=1e-3, patience=3),
    "alexnet": TrainSettings(model="alexnet", epochs=15, optimizer="adam", lr=1e-3, patience=3),
    "mlp": TrainSettings(model="mlp", epochs=20, optimizer="adam", lr=1e-3, patience=3),
    "best": TrainSettings(
        model="best",
        epochs=40,
        max_minutes=14.0,
        optimizer="adam",
        lr=3e-3,
        weight_decay=0.0,
        schedule="onecycle",
        label_smoothing=0.1,
        augment=AugmentSettings(),
    ),
}


def recipe(model: str, **overrides: object) -> TrainSettings:
    """The default `TrainSettings` of `model`, with the given fields replaced (None values ignored)."""
    if model not in RECIPES:
        raise TexscribeError(f"unknown digit model {model!r}; choose one of: {', '.join(RECIPES)}")
    return replace(RECIPES[model], **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    threads: int
    epochs_done: float  # fractional when a time budget ended the epoch early


@dataclass
class TrainResult:
    """The model holds the best-validation weights, in eval mode. `seconds` is the wall time of training."""

    model: nn.Module
    settings: TrainSettings
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = 0.0
    stopped_early: bool = False
    seconds: float = 0.0
    steps: int = 0
    bf16: bool = False
    # (epoch as a fraction, mean train loss, mean train accuracy) over each `TRACE_EVERY` steps: curves
    trace: list[tuple[float, float, float]] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "settings": asdict(self.settings),
            "history": [asdict(h) for h in self.history],
            "best_epoch": self.best_epoch,
            "best_val_acc": self.best_val_acc,
            "stopped_early": self.stopped_early,
            "train_seconds": round(self.seconds, 1),
            "steps": self.steps,
            "trace": [[round(v, 5) for v in point] for point in self.trace],
            "bf16": self.bf16,
        }


def bf16_supported() -> bool:
    """True when oneDNN can run bf16 convolutions natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class ThreadTuner:
    """Keeps torch on whichever thread count (1 or `max_threads`) trains fastest right now.

    On a machine shared with other jobs, two threads can be ten times slower than one: every
    parallel region waits for whichever thread the scheduler has parked. Idle, two are ~2x faster.
    So the tuner times `window` steps with each count, uses the faster one for `recheck` steps,
    and measures again.
    """

    def __init__(self, max_threads: int, window: int = 15, recheck: int = 400, warmup: int = 3):
        self.options = sorted({1, max(1, max_threads)})
        self.window, self.recheck = window, recheck
        self.original = torch.get_num_threads()
        self.times: dict[int, float] = {}
        self.current, self.count, self.elapsed = self.options[-1], 0, 0.0
        self.probing = len(self.options) > 1
        self.warmup = warmup  # the first steps build kernels and caches: not representative
        torch.set_num_threads(self.current)

    def __enter__(self) -> ThreadTuner:
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.original)

    def record(self, seconds: float) -> None:
        """Report the wall time of one training step; may switch the thread count."""
        if self.warmup > 0:
            self.warmup -= 1
            return
        self.count += 1
        self.elapsed += seconds
        if self.probing and self.count >= self.window:
            self.times[self.current] = self.elapsed / self.count
            untried = [t for t in self.options if t not in self.times]
            if untried:
                self._use(untried[0])
            else:
                self.probing = False
                self._use(min(self.times, key=self.times.__getitem__))
                log.debug("thread tuner: s/step %s -> %d threads", self.times, self.current)
        elif not self.probing and self.count >= self.recheck:
            self.times.clear()
            self.probing = len(self.options) > 1
            self._use(self.options[-1])

    def _use(self, threads: int) -> None:
        self.current, self.count, self.elapsed = threads, 0, 0.0
        torch.set_num_threads(threads)


def make_optimizer(model: nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    # no weight decay on batch-norm and bias parameters (1-D tensors)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if s.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum, nesterov=s.momentum > 0)
    return torch.optim.AdamW(groups, lr=s.lr) if s.weight_decay else torch.optim.Adam(groups, lr=s.lr)


def lr_factor(schedule: str, progress: float) -> float:
    """Multiplier of the peak learning rate at `progress` in [0, 1] of the run.

    onecycle: linear warm-up from 1/20 over the first 15 %, then cosine down to 1/1000;
    cosine: cosine from 1 to 0; constant: 1.
    """
    p = min(max(progress, 0.0), 1.0)
    if schedule == "onecycle":
        if p < WARMUP:
            return 0.05 + 0.95 * p / WARMUP
        return 0.001 + 0.999 * 0.5 * (1 + math.cos(math.pi * (p - WARMUP) / (1 - WARMUP)))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * p))
    return 1.0


@torch.no_grad()
def evaluate(
    model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000
) -> tuple[float, float, Tensor]:
    """Mean cross-entropy, accuracy in [0, 1] and predictions (N,) of `model` on (N, 1, 28, 28) images (fp32)."""
    was_training = model.training
    model.eval()
    losses, preds = [], []
    for i in range(0, len(labels), batch_size):
        logits = model(images[i : i + batch_size].contiguous(memory_format=torch.channels_last)).float()
        losses.append(F.cross_entropy(logits, labels[i : i + batch_size], reduction="sum"))
        preds.append(logits.argmax(1))
    model.train(was_training)
    pred = torch.cat(preds)
    return float(torch.stack(losses).sum()) / len(labels), float((pred == labels).float().mean()), pred


def confusion_matrix(pred: Tensor, labels: Tensor, classes: int = 10) -> Tensor:
    """(classes, classes) int64 counts: row = true label, column = prediction."""
    return torch.bincount(labels * classes + pred, minlength=classes * classes).reshape(classes, classes)


def train(data: MnistSplits, settings: TrainSettings, model: nn.Module | None = None) -> TrainResult:
    """Train `settings.model` (or the given `model`) on `data.train_*`, selecting on `data.val_*`.

    With `max_minutes`, the learning-rate schedule runs on wall-clock progress
    (max of step fraction and time fraction), so a run on a slow or busy machine still anneals
    fully and ends inside its budget, possibly mid-epoch.
    """
    s = settings
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    model = (model or build_model(s.model)).to(memory_format=torch.channels_last)
    use_bf16 = bf16_supported() if s.bf16 is None else s.bf16
    n = len(data.train_y)
    steps_per_epoch = max(1, n // s.batch_size)  # drop the ragged last batch: stable batch-norm statistics
    total_steps = s.epochs * steps_per_epoch
    budget = s.max_minutes * 60 if s.max_minutes else math.inf  # None or 0: no time budget
    opt = make_optimizer(model, s)
    result = TrainResult(model=model, settings=s, bf16=use_bf16)
    best_key, best_state, bad_epochs = (-1.0, 0.0), None, 0
    start = time.perf_counter()
    log.info("training %s on %d images (%d steps/epoch, bf16=%s)", s.model, n, steps_per_epoch, use_bf16)
    step, out_of_time, val_cost, val_total = 0, False, 0.0, 0.0
    trace_loss, trace_correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)
    with ThreadTuner(torch.get_num_threads()) as tuner:
        for epoch in range(1, s.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=gen)
            loss_sum = torch.zeros(())
            correct = torch.zeros((), dtype=torch.int64)
            epoch_steps = 0
            for i in range(steps_per_epoch):
                # Time progress counts training time only (validation passes excluded) against the
                # budget less one validation pass: a run that spends its budget stops mid-epoch at the
                # annealed end of its schedule, then validates once.
                trained_s = time.perf_counter() - start - val_total
                progress = max(step / total_steps, trained_s / max(budget - val_cost, 1e-9))
                if progress >= 1.0:
                    out_of_time = True
                    break
                for group in opt.param_groups:
                    group["lr"] = s.lr * lr_factor(s.schedule, progress)
                t_step = time.perf_counter()
                idx = order[i * s.batch_size : (i + 1) * s.batch_size]
                x, y = data.train_x[idx], data.train_y[idx]
                if s.augment is not None:
                    x = random_warp(x, s.augment, gen)
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=s.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tuner.record(time.perf_counter() - t_step)
                step += 1
                epoch_steps += 1
                hits = (logits.detach().argmax(1) == y).sum()
                loss_sum += loss.detach()
                correct += hits
                trace_loss += loss.detach()
                trace_correct += hits
                if step % TRACE_EVERY == 0:
                    seen = TRACE_EVERY * s.batch_size
                    at = epoch - 1 + epoch_steps / steps_per_epoch
                    result.trace.append((at, float(trace_loss) / TRACE_EVERY, float(trace_correct) / seen))
                    trace_loss.zero_()
                    trace_correct.zero_()
            if epoch_steps == 0:  # the budget ran out exactly at an epoch boundary (already validated)
                result.stopped_early = out_of_time
                break
            t_val = time.perf_counter()
            val_loss, val_acc, _ = evaluate(model, data.val_x, data.val_y)
            val_cost = time.perf_counter() - t_val
            val_total += val_cost
            entry = EpochLog(
                epoch=epoch,
                train_loss=float(loss_sum) / epoch_steps,
                train_acc=float(correct) / (epoch_steps * s.batch_size),
                val_loss=val_loss,
                val_acc=val_acc,
                lr=opt.param_groups[0]["lr"],
                seconds=time.perf_counter() - t0,
                threads=tuner.current,
                epochs_done=epoch - 1 + epoch_steps / steps_per_epoch,
            )
            result.history.append(entry)
            log.info(
                "%s epoch %d/%d%s: train loss %.4f acc %.4f | val loss %.4f acc %.4f | %.1fs, %d threads",
                s.model, epoch, s.epochs, "" if epoch_steps == steps_per_epoch else f" ({epoch_steps} steps)",
                entry.train_loss, entry.train_acc, val_loss, val_acc, entry.seconds, entry.threads,
            )  # fmt: skip
            if (val_acc, -val_loss) > best_key:
                best_key, bad_epochs = (val_acc, -val_loss), 0
                best_state = copy.deepcopy(model.state_dict())
                result.best_epoch, result.best_val_acc = epoch, val_acc
            else:
                bad_epochs += 1
            if s.patience is not None and bad_epochs >= s.patience:
                result.stopped_early = True
                log.info("early stop: no validation improvement for %d epochs", s.patience)
                break
            if out_of_time:
                result.stopped_early = epoch < s.epochs
                log.info("time budget of %.1f min spent during epoch %d", s.max_minutes, epoch)
                break
    result.seconds = time.perf_counter() - start
    result.steps = step
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result
