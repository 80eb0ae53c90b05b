"""Training logic only: loss, optimiser + schedule, validation by greedy decoding.

The model itself comes from `models.registry.build_model`; decoding from `texscribe.decoding`;
metrics from `texscribe.metrics`. Checkpoints carry the config and vocabulary as hyperparameters,
so a `.ckpt` alone can be exported to a model file.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from texscribe.config import Config, stored_config
from texscribe.data.batching import Batch
from texscribe.errors import ConfigError
from texscribe.latex import Vocab


class LitImageToLatex(L.LightningModule):
    """LightningModule around `ImageToLatex`. config: `Config.to_dict()`; vocab: `Vocab.itos`."""

    def __init__(self, config: dict[str, Any], vocab: list[str]):
        super().__init__()
        self.save_hyperparameters()
        from texscribe.models.registry import build_model

        self.config: Config = stored_config(config)  # a checkpoint's may come from an older version
        self.vocab = Vocab.from_list(vocab)
        self.model = build_model(self.config.model, len(self.vocab))
        self.teacher = None  # mean teacher: the EMA model that is validated and exported
        if self.config.train.mean_teacher.enabled:
            from texscribe.training.mean_teacher import MeanTeacher, make_teacher

            self.mean_teacher = MeanTeacher(self.config)
            self.teacher = make_teacher(self.model)
        self._val_preds: list[list[str]] = []
        self._val_refs: list[list[str]] = []
        self._val_loss = torch.zeros(2, dtype=torch.float64)  # (sum of token losses, token count)
        self.val_history: list[dict[str, float]] = []  # one entry per validation, kept in checkpoints

    # ------------------------------------------------------------------ training
    def evaluated_model(self) -> Any:
        """The model validation scores and the run exports: the EMA teacher with mean teacher, else the model."""
        return self.teacher if self.teacher is not None else self.model

    def logits(self, batch: Batch, both_directions: bool, model: Any = None) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits (N, T, V) and targets (N, T) of `model` (default: the trained model). With
        both directions the encoder runs once and the decoder sees each memory twice: rows [0, B) are L2R,
        rows [B, 2B) R2L."""
        model = model if model is not None else self.model
        memory = model.encode(batch.images, batch.pixel_mask)
        tgt_in, tgt_out = batch.tgt_in, batch.tgt_out
        if both_directions and batch.tgt_in_r2l is not None:
            b = len(batch)
            if not model.decoder.repeats_memory:  # else the decoder shares it itself
                memory = memory.index_select(torch.arange(2 * b, device=tgt_in.device) % b)
            tgt_in = torch.cat([tgt_in, batch.tgt_in_r2l])
            tgt_out = torch.cat([tgt_out, batch.tgt_out_r2l])
        # in training, a decoder built with model.decoder.teacher_forcing < 1 feeds back its own predictions
        return model.decoder(memory, tgt_in), tgt_out

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        logits, tgt_out = self.logits(batch, both_directions=True)
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(),
            tgt_out.flatten(),
            ignore_index=Vocab.pad_id,
            label_smoothing=self.config.train.label_smoothing,
        )
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(batch))
        if self.teacher is not None:
            # consistency batches get the training batches' size buckets: the model sees those shapes only
            buckets = getattr(self.trainer.datamodule, "size_buckets", None)
            consistency = self.mean_teacher.step_loss(
                self.model, self.teacher, self.device, self.global_step, buckets
            )
            self.log("train/consistency", consistency, on_step=True, on_epoch=True, batch_size=len(batch))
            loss = loss + self.mean_teacher.weight(self.global_step) * consistency
        return loss

    def on_train_start(self) -> None:
        if self.teacher is not None and self.global_step == 0:  # a fresh run (maybe from --init-weights)
            self.teacher.load_state_dict(self.model.state_dict())

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        if self.teacher is not None:  # after the optimizer step: global_step already counts it
            self.mean_teacher.update(self.teacher, self.model, self.global_step - 1)

    # ---------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._val_preds, self._val_refs = [], []
        self._val_loss = torch.zeros(2, dtype=torch.float64)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        from texscribe.decoding import decode

        logits, tgt_out = self.logits(batch, both_directions=False, model=self.evaluated_model())
        # plain cross-entropy (no smoothing), so val/loss reads as the model's true NLL per token
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=Vocab.pad_id, reduction="sum"
        )
        self._val_loss += torch.tensor(
            [loss.item(), int((tgt_out != Vocab.pad_id).sum())], dtype=torch.float64
        )
        # Greedy through `decode`, the search `Recognizer.predict` runs for users. A prediction longer than
        # its reference + 2 is already > 2 edits away, so decoding further cannot change ExpRate, <=1 or
        # <=2: cap the length there (saves most of an untrained model's time).
        max_len = int(batch.lengths.max()) + 2
        hyps = decode(self.evaluated_model(), batch.images, batch.pixel_mask, beam=1, max_len=max_len)
        self._val_preds.extend(self.vocab.decode(h.tokens) for h in hyps)
        self._val_refs.extend(self.vocab.decode(r.tolist()) for r in batch.tgt_out)

    def on_validation_epoch_end(self) -> None:
        from texscribe.metrics import exprate, within_k_errors

        preds, refs, n = self._val_preds, self._val_refs, len(self._val_refs)
        sums = [
            n,
            exprate(preds, refs) * n,
            within_k_errors(preds, refs, 1) * n,
            within_k_errors(preds, refs, 2) * n,
        ]
        stats = torch.tensor(sums + self._val_loss.tolist(), dtype=torch.float64, device=self.device)
        stats = self.trainer.strategy.reduce(stats, reduce_op="sum")  # DDP: every rank decoded a shard
        count, exact, le1, le2, loss_sum, tokens = stats.tolist()
        if count == 0:
            return
        metrics = {
            "val/exprate": exact / count,
            "val/le1": le1 / count,
            "val/le2": le2 / count,
            "val/loss": loss_sum / max(tokens, 1.0),
        }
        for key, value in metrics.items():
            self.log(key, value, prog_bar=key == "val/exprate", batch_size=int(count))
        if not self.trainer.sanity_checking:
            self.val_history.append(
                {"step": self.global_step, "epoch": self.current_epoch, "count": count, **metrics}
            )

    def best_metrics(self) -> dict[str, float]:
        """The validation with the highest ExpRate (the earliest on ties), {} before any validation."""
        return max(self.val_history, key=lambda m: (m["val/exprate"], -m["step"]), default={})

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_history"] = self.val_history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_history = list(checkpoint.get("val_history", []))

    # ------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.config.optim
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
        groups = [
            {"params": decay, "weight_decay": optim.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        name = optim.name.lower()
        fast = adam_implementation(self.config.train.grad_clip)
        if name == "adamw":
            opt = torch.optim.AdamW(groups, lr=optim.lr, **fast)
        elif name == "adam":
            opt = torch.optim.Adam(groups, lr=optim.lr, **fast)
        elif name == "sgd":
            opt = torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=optim.momentum > 0)
        else:
            raise ConfigError(f"optim.name: unknown optimizer {optim.name!r}; choose adamw, adam or sgd")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self._scheduler(opt), "interval": "step"}}

    def _scheduler(self, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        optim = self.config.optim
        kind = optim.scheduler.lower()
        if kind not in SCHEDULERS:
            raise ConfigError(f"optim.scheduler: unknown {optim.scheduler!r}; choose {', '.join(SCHEDULERS)}")
        total = self._total_steps() if kind in ("cosine", "onecycle") else 0
        steps_per_epoch = self._steps_per_epoch() if kind == "multistep" else 1
        kwargs = dict(
            warmup=max(0, optim.warmup_steps),
            total=total,
            milestones=sorted(m * steps_per_epoch for m in optim.milestones),
            gamma=optim.gamma,
            floor=optim.min_lr_ratio,
        )
        # LambdaLR recomputes the factor from the step, so a resumed run with a longer horizon stretches
        # the schedule instead of failing (as torch's OneCycleLR does past its fixed total).
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(kind, step, **kwargs))

    def _total_steps(self) -> int:
        """Optimizer steps of the whole run (max_steps, or max_epochs x batches per epoch): the schedule length."""
        trainer = self.trainer
        by_epochs = (
            trainer.max_epochs * self._steps_per_epoch()
            if trainer.max_epochs and trainer.max_epochs > 0
            else 0
        )
        by_steps = trainer.max_steps if trainer.max_steps > 0 else 0
        total = min(t for t in (by_epochs, by_steps) if t) if by_epochs or by_steps else 0
        if total <= 0:
            raise ConfigError(
                "optim.scheduler cosine/onecycle needs train.max_steps or train.max_epochs to be set"
            )
        return total

    def _steps_per_epoch(self) -> int:
        """Batches per epoch on this rank, from the datamodule's own loader.

        Not `trainer.estimated_stepping_batches`: that builds Lightning's train loader before a checkpoint
        is restored, and the loader's saved position would then never be loaded on resume.
        """
        datamodule = self.trainer.datamodule
        if datamodule is None:
            return max(1, int(self.trainer.estimated_stepping_batches // max(1, self.trainer.max_epochs)))
        return max(1, len(datamodule.train_dataloader()))


SCHEDULERS = ("cosine", "multistep", "onecycle", "constant")


def adam_implementation(grad_clip: float | None) -> dict[str, bool]:
    """Adam(W) keyword for the fast implementation: fused (one kernel for all tensors) or multi-tensor,
    instead of a dozen elementwise ops per tensor. Lightning refuses gradient clipping with a fused
    optimizer under mixed precision (it assumes the optimizer unscales gradients itself), so runs that
    clip use the multi-tensor path."""
    return {"foreach": True} if grad_clip else {"fused": True}


def lr_factor(
    kind: str, step: int, *, warmup: int, total: int, milestones: list[int], gamma: float, floor: float
) -> float:
    """Learning-rate multiplier at optimizer `step` (0-based); every schedule starts with a linear warmup.

    - constant: 1 after warmup.
    - multistep: times `gamma` at each milestone step passed.
    - cosine: half-cosine from 1 (end of warmup) to `floor` at `total` steps.
    - onecycle: like cosine, but the warmup starts at 1/25 instead of ~0 and takes `warmup` steps or,
      when that is 0, the first 30 % of `total` (Smith's one-cycle shape, without momentum cycling).
    """
    if kind == "onecycle":
        ramp_len = warmup or max(1, int(0.3 * total))
        ramp = 0.04 + 0.96 * min(1.0, step / ramp_len)
        warmup = ramp_len
    else:
        ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if kind == "multistep":
        return ramp * gamma ** sum(step >= m for m in milestones)
    if kind in ("cosine", "onecycle"):
        progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
        return ramp * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
    return ramp
