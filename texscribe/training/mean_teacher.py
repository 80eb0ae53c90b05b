"""Mean teacher (Tarvainen & Valpola 2017) for image-to-LaTeX: an EMA teacher and a consistency loss.

Each training step (see `LitImageToLatex`, `train.mean_teacher` in the config):

1. the usual supervised loss of the student on its labelled batch;
2. a batch of images from `unlabelled` (labels ignored), augmented twice independently: view A for
   the student, view B for the teacher;
3. the teacher (eval mode, no gradient) greedily decodes view B -> pseudo-labels y (the greedy
   tokens), and gives its teacher-forced token distributions q_t = P_teacher(· | y_<t, B);
4. the student's teacher-forced distributions p_t = P_student(· | y_<t, A) on the same prefixes;
5. consistency = mean over tokens of KL(q_t || p_t), weighted by consistency_weight · ramp(step);
6. after the optimizer step, teacher θ' <- d θ' + (1 - d) θ with d = min(ema_decay, (1 + s) / (10 + s))
   (the teacher follows the student closely while both change fast), buffers (BatchNorm statistics)
   copied from the student.

The teacher is what validation scores and what the run exports: EMA weights generalise better than
the last student weights, and that is the model the method produces.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from texscribe.config import Config, MeanTeacherConfig
from texscribe.data.batching import Batch, SizeBucketBatchSampler, collate, targets
from texscribe.errors import ConfigError
from texscribe.latex import Vocab
from texscribe.models.interface import Memory

log = logging.getLogger(__name__)


def check_config(mt: MeanTeacherConfig) -> None:
    """Raise `ConfigError` naming the `train.mean_teacher.*` key that is out of range."""
    where = "train.mean_teacher"
    if not 0.0 <= mt.ema_decay < 1.0:
        raise ConfigError(f"{where}.ema_decay must be in [0, 1) (e.g. 0.999), got {mt.ema_decay}")
    if mt.consistency_weight < 0:
        raise ConfigError(f"{where}.consistency_weight must be >= 0, got {mt.consistency_weight}")
    if mt.rampup_steps < 0:
        raise ConfigError(f"{where}.rampup_steps must be >= 0, got {mt.rampup_steps}")
    if mt.batch_size < 1 or mt.max_len < 1:
        raise ConfigError(f"{where}.batch_size and max_len must be >= 1, got {mt.batch_size}, {mt.max_len}")


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of the student (same weights and buffers, no gradients)."""
    teacher = copy.deepcopy(student)
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def effective_decay(ema_decay: float, step: int) -> float:
    """EMA decay at optimizer step `step` (0-based): min(ema_decay, (1 + step) / (10 + step))."""
    return min(ema_decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * student for parameters; buffers copied from the student."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.lerp_(s.detach(), 1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


def rampup(step: int, rampup_steps: int) -> float:
    """Sigmoid-shaped ramp exp(-5 (1 - t)^2), t = step / rampup_steps clipped to [0, 1]; 1 without ramp."""
    if rampup_steps <= 0:
        return 1.0
    t = min(1.0, max(0.0, step / rampup_steps))
    return math.exp(-5.0 * (1.0 - t) ** 2)


def consistency_loss(
    student: nn.Module, teacher: nn.Module, view_s: Batch, view_t: Batch, max_len: int
) -> Tensor:
    """Mean over pseudo-label tokens (and the final <eos>) of KL(teacher || student); differentiable in the student.

    view_s / view_t: two augmentations of the same images, in the same order (their labels are ignored).
    """
    from texscribe.decoding import greedy_decode

    was_training = teacher.training
    teacher.eval()
    with torch.no_grad():
        memory = teacher.encode(view_t.images, view_t.pixel_mask)  # once for decoding and scoring
        pseudo = greedy_decode(_Encoded(memory, teacher.decoder), view_t.images, view_t.pixel_mask, max_len)
        tgt_in, tgt_out = (t.to(view_t.images.device) for t in targets(pseudo, Vocab.sos_id, Vocab.eos_id))
        q = F.log_softmax(teacher.decoder(memory, tgt_in).float(), dim=-1)
    teacher.train(was_training)
    p = F.log_softmax(student(view_s.images, view_s.pixel_mask, tgt_in).float(), dim=-1)
    kl = (q.exp() * (q - p)).sum(-1)  # (B, T)
    real = tgt_out != Vocab.pad_id
    return (kl * real).sum() / real.sum().clamp(min=1)


class _Encoded:
    """A `DecodingModel` whose images are already encoded (so the teacher's encoder runs once per step)."""

    def __init__(self, memory: Memory, decoder: nn.Module):
        self.memory, self.decoder = memory, decoder

    def encode(self, images: Tensor, pixel_mask: Tensor) -> Memory:
        return self.memory


class ViewPairs:
    """Endless batches of (view for the student, view for the teacher) from prepared datasets, labels ignored.

    Images go through the training path (`LatexDataset`: preprocess + `data.augment`), each drawn twice
    with independent augmentations; batches are size-bucketed under `data.batch_max_pixels` with at
    most `mean_teacher.batch_size` images, padded into the training run's size `buckets` when given (a
    batch larger than every bucket gets plain padding). The order restarts from `seed` (it is not
    checkpointed).
    """

    def __init__(self, config: Config, seed: int, buckets: Sequence[tuple[int, int]] | None = None):
        from texscribe.data.augment import build_augmenter
        from texscribe.data.datamodule import LatexDataset, merged_vocab
        from texscribe.data.prepared import PreparedDataset, parse_train_entry

        mt, data = config.train.mean_teacher, config.data
        folders = list(mt.unlabelled) or list(data.train)
        if not folders:
            raise ConfigError("train.mean_teacher.unlabelled is empty and so is data.train: no images for it")
        datasets = [PreparedDataset.open(parse_train_entry(p)[0]) for p in folders]
        unlimited = dataclasses.replace(data, max_label_len=10**9)  # labels are not used: keep every image
        augment = build_augmenter(data.augment, seed=seed + 101)
        self.dataset = LatexDataset(
            datasets, merged_vocab(datasets), unlimited, augment=augment, name="unlabelled"
        )
        if len(self.dataset) == 0:
            raise ConfigError(f"train.mean_teacher.unlabelled: no images in {', '.join(folders)}")
        self.buckets = list(buckets) if buckets else None
        self.sampler = SizeBucketBatchSampler(
            self.dataset.sizes, data.batch_max_pixels, mt.batch_size, seed=seed, buckets=self.buckets
        )
        self._batches: Iterator[list[int]] = iter(())
        log.info("mean teacher: %d unlabelled images from %s", len(self.dataset), ", ".join(folders))

    def __iter__(self) -> Iterator[tuple[Batch, Batch]]:
        return self

    def __next__(self) -> tuple[Batch, Batch]:
        while True:
            indices = next(self._batches, None)
            if indices is None:
                self.sampler.set_epoch(self.sampler.epoch + 1)
                self._batches = iter(self.sampler)
                continue
            pairs = [(self.dataset[i], self.dataset[i]) for i in indices]
            pairs = [
                (a, b) for a, b in pairs if a is not None and b is not None
            ]  # unreadable: logged, skipped
            if pairs:
                views = [a for a, _ in pairs], [b for _, b in pairs]
                return collate(views[0], buckets=self.buckets), collate(views[1], buckets=self.buckets)


class MeanTeacher:
    """What the Lightning module calls: the ramped weight, the consistency term of a step, the EMA update."""

    def __init__(self, config: Config):
        check_config(config.train.mean_teacher)
        self.config = config
        self.mt = config.train.mean_teacher
        self._views: ViewPairs | None = None

    def weight(self, step: int) -> float:
        return self.mt.consistency_weight * rampup(step, self.mt.rampup_steps)

    def step_loss(
        self,
        student: nn.Module,
        teacher: nn.Module,
        device: torch.device,
        step: int,
        buckets: Sequence[tuple[int, int]] | None = None,
    ) -> Tensor:
        """Consistency loss on the next unlabelled view pair (opened lazily, seeded by the run seed and
        step; padded into the training batches' size `buckets` when given)."""
        if self._views is None:
            self._views = ViewPairs(self.config, seed=self.config.train.seed + step, buckets=buckets)
        view_s, view_t = next(self._views)
        return consistency_loss(student, teacher, view_s.to(device), view_t.to(device), self.mt.max_len)

    def update(self, teacher: nn.Module, student: nn.Module, step: int) -> None:
        ema_update(teacher, student, effective_decay(self.mt.ema_decay, step))
