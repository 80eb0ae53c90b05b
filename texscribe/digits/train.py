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
from texscribe.digits.models import build_digit_model
from texscribe.errors import TexscribeError

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "onecycle", "cosine")
WARMUP = 0.15  # fraction of a onecycle run spent warming up
TRACE_EVERY = 25  # steps per point of the training-loss trace


@dataclass
class DigitTrainSettings:
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
RECIPES: dict[str, DigitTrainSettings] = {
    "cnn": DigitTrainSettings(model="cnn", epochs=15, optimizer="adam", lr=1e-3, patience=3),
    "lenet": DigitTrainSettings(model="lenet", epochs=20, optimizer="adam", lr=1e-3, patience=3),
    "alexnet": DigitTrainSettings(model="alexnet", epochs=15, optimizer="adam", lr=1e-3, patience=3),
    "mlp": DigitTrainSettings(model="mlp", epochs=20, optimizer="adam", lr=1e-3, patience=3),
    "best": DigitTrainSettings(
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


def recipe(model: str, **overrides: object) -> DigitTrainSettings:
    """The default `DigitTrainSettings` of `model`, with the given fields replaced (None values ignored)."""
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
class DigitTrainResult:
    """The model holds the best-validation weights, in eval mode. `seconds` is the wall time of training."""

    model: nn.Module
    settings: DigitTrainSettings
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


def make_optimizer(model: nn.Module, s: DigitTrainSettings) -> torch.optim.Optimizer:
    # no weight decay on batch-norm and bias parameters (1-D tensors)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if s.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum, nesterov=s.momentum > 0)
    return torch.optim.AdamW(groups, lr=s.lr) if s.weight_decay else torch.optim.Adam(groups, lr=s.lr)


def digit_lr_factor(schedule: str, progress: float) -> float:
    """Multiplier of the peak learning rate at `progress` in [0, 1] of the run.

    onecycle: linear warm-up from 1/20 over the first 15 %, then cosine down to 1/1000;
    cosine: cosine from 1 to 0; constant: 1.

    Not `training.lit_module.lr_factor`: that one runs on optimizer steps with a configured floor and a
    30 % ramp from 1/25; this one runs on *progress*, the larger of the step and the wall-clock fraction
    (`DigitTrainSettings.max_minutes`), so a run fitted to a time budget still anneals fully. The shipped
    digit model was trained with this shape; sharing the formula trainer's would change its results.
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
def evaluate_digit_model(
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


def train_digit_model(
    data: MnistSplits, settings: DigitTrainSettings, model: nn.Module | None = None
) -> DigitTrainResult:
    """Train `settings.model` (or the given `model`) on `data.train_*`, selecting on `data.val_*`.

    With `max_minutes`, the learning-rate schedule runs on wall-clock progress
    (max of step fraction and time fraction), so a run on a slow or busy machine still anneals
    fully and ends inside its budget, possibly mid-epoch.
    """
    s = settings
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    model = (model or build_digit_model(s.model)).to(memory_format=torch.channels_last)
    use_bf16 = bf16_supported() if s.bf16 is None else s.bf16
    steps_per_epoch = max(1, len(data.train_y) // s.batch_size)  # no ragged last batch: stable batch-norm
    opt = make_optimizer(model, s)
    result = DigitTrainResult(model=model, settings=s, bf16=use_bf16)
    clock = _RunClock(s.epochs * steps_per_epoch, s.max_minutes)
    log.info("training %s on %d images (%d steps/epoch, bf16=%s)", s.model, len(data.train_y), steps_per_epoch,
             use_bf16)  # fmt: skip
    best = _BestWeights()
    with ThreadTuner(torch.get_num_threads()) as tuner:
        loop = _EpochLoop(model, opt, data, s, gen, use_bf16, tuner, clock, result.trace, steps_per_epoch)
        for epoch in range(1, s.epochs + 1):
            t0 = time.perf_counter()
            done = loop.train_epoch(epoch)
            if done.steps == 0:  # the budget ran out exactly at an epoch boundary (already validated)
                result.stopped_early = done.out_of_time
                break
            entry = _validate(loop, done, epoch, t0)
            result.history.append(entry)
            if best.update(model, entry):
                result.best_epoch, result.best_val_acc = epoch, entry.val_acc
            if _should_stop(result, best, done.out_of_time, epoch):
                break
    result.seconds = clock.elapsed()
    result.steps = loop.step
    best.restore(model)
    model.eval()
    return result


@dataclass
class _EpochTotals:
    """One epoch's training: summed loss and correct predictions (tensors: no sync per step), steps run."""

    loss_sum: Tensor
    correct: Tensor
    steps: int = 0
    out_of_time: bool = False


class _RunClock:
    """Run progress in [0, 1]: the larger of the step fraction and the time fraction of the budget.

    Time progress counts training time only (validation passes excluded) against the budget less one
    validation pass: a run that spends its budget stops mid-epoch at the annealed end of its schedule,
    then validates once.
    """

    def __init__(self, total_steps: int, max_minutes: float | None):
        self.total_steps = total_steps
        self.budget_s = max_minutes * 60 if max_minutes else math.inf  # None or 0: no time budget
        self.start = time.perf_counter()
        self.val_cost = 0.0  # seconds of the last validation pass
        self.val_total = 0.0  # seconds of all validation passes

    def progress(self, step: int) -> float:
        trained_s = time.perf_counter() - self.start - self.val_total
        return max(step / self.total_steps, trained_s / max(self.budget_s - self.val_cost, 1e-9))

    def add_validation(self, seconds: float) -> None:
        self.val_cost = seconds
        self.val_total += seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class _EpochLoop:
    """The optimizer steps of a run: shuffling, the lr schedule, augmentation, bf16 autocast, the trace."""

    def __init__(
        self,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        data: MnistSplits,
        settings: DigitTrainSettings,
        gen: torch.Generator,
        use_bf16: bool,
        tuner: ThreadTuner,
        clock: _RunClock,
        trace: list[tuple[float, float, float]],
        steps_per_epoch: int,
    ):
        self.model, self.opt, self.data, self.s, self.gen = model, opt, data, settings, gen
        self.use_bf16, self.tuner, self.clock, self.trace = use_bf16, tuner, clock, trace
        self.steps_per_epoch = steps_per_epoch
        self.step = 0  # optimizer steps so far
        self._trace_loss, self._trace_correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)

    def train_epoch(self, epoch: int) -> _EpochTotals:
        """One pass over a fresh shuffle, cut short when the run's progress reaches 1."""
        s = self.s
        self.model.train()
        order = torch.randperm(len(self.data.train_y), generator=self.gen)
        done = _EpochTotals(torch.zeros(()), torch.zeros((), dtype=torch.int64))
        for i in range(self.steps_per_epoch):
            progress = self.clock.progress(self.step)
            if progress >= 1.0:
                done.out_of_time = True
                break
            for group in self.opt.param_groups:
                group["lr"] = s.lr * digit_lr_factor(s.schedule, progress)
            t_step = time.perf_counter()
            idx = order[i * s.batch_size : (i + 1) * s.batch_size]
            loss, hits = self._optimizer_step(self.data.train_x[idx], self.data.train_y[idx])
            self.tuner.record(time.perf_counter() - t_step)
            self.step += 1
            done.steps += 1
            done.loss_sum += loss
            done.correct += hits
            self._add_to_trace(loss, hits, epoch - 1 + done.steps / self.steps_per_epoch)
        return done

    def _optimizer_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One batch (B, 1, 28, 28), labels (B,): forward, backward, update; (detached loss, correct count)."""
        s = self.s
        if s.augment is not None:
            x = random_warp(x, s.augment, self.gen)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.use_bf16):
            logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=s.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach(), (logits.detach().argmax(1) == y).sum()

    def _add_to_trace(self, loss: Tensor, hits: Tensor, at: float) -> None:
        """Accumulate; every `TRACE_EVERY` steps append (epoch fraction, mean loss, accuracy) to the trace."""
        self._trace_loss += loss
        self._trace_correct += hits
        if self.step % TRACE_EVERY == 0:
            seen = TRACE_EVERY * self.s.batch_size
            self.trace.append((at, float(self._trace_loss) / TRACE_EVERY, float(self._trace_correct) / seen))
            self._trace_loss.zero_()
            self._trace_correct.zero_()


def _validate(loop: _EpochLoop, done: _EpochTotals, epoch: int, t0: float) -> EpochLog:
    """Score the validation split after an epoch (started at `t0`) and log the epoch's line."""
    s, steps_per_epoch = loop.s, loop.steps_per_epoch
    t_val = time.perf_counter()
    val_loss, val_acc, _ = evaluate_digit_model(loop.model, loop.data.val_x, loop.data.val_y)
    loop.clock.add_validation(time.perf_counter() - t_val)
    entry = EpochLog(
        epoch=epoch,
        train_loss=float(done.loss_sum) / done.steps,
        train_acc=float(done.correct) / (done.steps * s.batch_size),
        val_loss=val_loss,
        val_acc=val_acc,
        lr=loop.opt.param_groups[0]["lr"],
        seconds=time.perf_counter() - t0,
        threads=loop.tuner.current,
        epochs_done=epoch - 1 + done.steps / steps_per_epoch,
    )
    log.info(
        "%s epoch %d/%d%s: train loss %.4f acc %.4f | val loss %.4f acc %.4f | %.1fs, %d threads",
        s.model, epoch, s.epochs, "" if done.steps == steps_per_epoch else f" ({done.steps} steps)",
        entry.train_loss, entry.train_acc, val_loss, val_acc, entry.seconds, entry.threads,
    )  # fmt: skip
    return entry


class _BestWeights:
    """The best validation score so far (accuracy, ties broken by loss), its weights, epochs since."""

    def __init__(self) -> None:
        self.key = (-1.0, 0.0)
        self.state: dict[str, Tensor] | None = None
        self.bad_epochs = 0

    def update(self, model: nn.Module, entry: EpochLog) -> bool:
        """Keep a copy of the weights when `entry` beats the best; True then."""
        if (entry.val_acc, -entry.val_loss) > self.key:
            self.key, self.bad_epochs = (entry.val_acc, -entry.val_loss), 0
            self.state = copy.deepcopy(model.state_dict())
            return True
        self.bad_epochs += 1
        return False

    def restore(self, model: nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def _should_stop(result: DigitTrainResult, best: _BestWeights, out_of_time: bool, epoch: int) -> bool:
    """Early stopping (patience) or a spent time budget; sets `result.stopped_early`."""
    s = result.settings
    if s.patience is not None and best.bad_epochs >= s.patience:
        result.stopped_early = True
        log.info("early stop: no validation improvement for %d epochs", s.patience)
        return True
    if out_of_time:
        result.stopped_early = epoch < s.epochs
        log.info("time budget of %.1f min spent during epoch %d", s.max_minutes, epoch)
        return True
    return False
