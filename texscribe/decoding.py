"""Beam search (greedy = one beam), ensembles and right-to-left rescoring, written once.

Anything with the `texscribe.models.interface.DecodingModel` shape can be decoded: `ImageToLatex`
(torch) or the ONNX runtime backend. `decode` is the one search: `Recognizer.predict` (users,
`texscribe evaluate`) and training's validation both call it, so what training validates is what
users get; `greedy_decode` is its `beam=1` token ids.

Conventions (shared with training, see `texscribe.latex.Vocab` and `texscribe.data.batching`): the
`Vocab.pad_id` and start tokens are never emitted. Right-to-left (R2L) sequences swap the two markers
(BTTR): tgt_in = [<eos>] + reversed(tokens), tgt_out = reversed(tokens) + [<sos>], so R2L greedy
decoding is `greedy_decode(..., sos_id=Vocab.eos_id, eos_id=Vocab.sos_id)`.

Callers put the models in eval mode and the inputs on the models' device; these functions only read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from texscribe.errors import ModelLoadError
from texscribe.latex import Vocab
from texscribe.models.interface import Cache, DecodingModel, Memory

StopCheck = Callable[[], None]  # raises to abandon decoding (a server request past its deadline)


@dataclass
class Hypothesis:
    """One decoded sequence.

    tokens: ids without <sos>/<eos>; token_logprobs[i]: log P(tokens[i] | prefix) (ensemble-averaged);
    eos_logprob: log P(<eos> | tokens), None when cut at `max_len`; score: L2R sum of log-probs
    (tokens + eos); r2l_score: teacher-forced right-to-left sum of log-probs (when rescored);
    rank_score: the length-normalised value the hypothesis was chosen by.
    """

    tokens: list[int]
    score: float
    token_logprobs: list[float]
    eos_logprob: float | None
    rank_score: float = 0.0
    r2l_score: float | None = None
    alternatives: list[Hypothesis] = field(default_factory=list, repr=False)

    @property
    def finished(self) -> bool:
        return self.eos_logprob is not None

    @property
    def length(self) -> int:
        """Scored positions: tokens plus the <eos> when finished (what length normalisation divides by)."""
        return len(self.tokens) + (1 if self.finished else 0)


def _log_probs(logits: Tensor, start_id: int) -> Tensor:
    """float32 log-softmax over the last dim with <pad> and the start token excluded (never valid outputs)."""
    logits = logits.float().clone()
    logits[..., Vocab.pad_id] = float("-inf")
    logits[..., start_id] = float("-inf")
    return torch.log_softmax(logits, dim=-1)


def greedy_decode(
    model: DecodingModel,
    images: Tensor,
    pixel_mask: Tensor,
    max_len: int = 200,
    sos_id: int = Vocab.sos_id,
    eos_id: int = Vocab.eos_id,
) -> list[list[int]]:
    """Argmax decoding of a batch: images (B,1,H,W), pixel_mask (B,H,W) -> B id lists (no <sos>/<eos>).

    The token ids of `decode(..., beam=1)`: one search for users and for training. Finished images leave
    the batch as they end, so the cost follows the longest output.
    """
    hyps = decode(model, images, pixel_mask, beam=1, max_len=max_len, sos_id=sos_id, eos_id=eos_id)
    return [h.tokens for h in hyps]


def decode(
    models: DecodingModel | Sequence[DecodingModel],
    images: Tensor,
    pixel_mask: Tensor,
    *,
    beam: int = 1,
    max_len: int = 200,
    length_penalty: float = 1.0,
    r2l_rescore: bool = False,
    sos_id: int = Vocab.sos_id,
    eos_id: int = Vocab.eos_id,
    stop_check: StopCheck | None = None,
) -> list[Hypothesis]:
    """Beam search over B images x `beam` hypotheses; one best `Hypothesis` per image, in order.

    models: one model or an ensemble (step log-probs averaged; every model keeps its own memory/cache;
    all must share a vocabulary). Hypotheses are ranked by score / length**length_penalty (0 = raw sum).
    r2l_rescore (for models trained bidirectionally): each image's final hypotheses are also scored
    right-to-left by a teacher-forced pass and ranked by (L2R + R2L) / (2 * length**length_penalty).
    `beam=1` is greedy decoding. Each result lists the other finished candidates in `.alternatives`.
    stop_check: called before encoding, before every decoding step and before the R2L pass; whatever it
    raises ends decoding there (a deadline stops within one step).
    """
    model_list = [models] if isinstance(models, DecodingModel) else list(models)
    if not model_list:
        raise ValueError("decode() needs at least one model")
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    check_same_vocab(model_list)
    check = stop_check or _never_stop
    with torch.inference_mode():
        check()
        memories = [m.encode(images, pixel_mask) for m in model_list]
        search = _BeamSearch(model_list, memories, beam, max_len, length_penalty, sos_id, eos_id)
        candidates = search.run(check)
        if r2l_rescore:
            check()
            _rescore_r2l(model_list, memories, candidates, length_penalty, sos_id, eos_id)
    results = []
    for cands in candidates:
        ranked = sorted(cands, key=lambda h: h.rank_score, reverse=True)
        best = ranked[0]
        best.alternatives = ranked[1:]
        results.append(best)
    return results


def _never_stop() -> None:
    return None


def check_same_vocab(models: Sequence[DecodingModel]) -> None:
    """Ensemble members may differ in encoder and decoder but must share the output vocabulary.

    Models that report `vocab_size` (`ImageToLatex`) are compared up front (`load_model` compares the
    vocabularies of loaded models itself); averaging step log-probs over different vocabularies would mix
    unrelated tokens, so this raises `ModelLoadError`.
    """
    sizes = [getattr(m, "vocab_size", None) for m in models]
    known = {s for s in sizes if s is not None}
    if len(known) > 1:
        raise ModelLoadError(
            f"cannot ensemble models with different vocabularies (sizes {sizes}); "
            "ensemble only models trained with the same vocab.json"
        )


def _normalised(score: float, length: int, penalty: float) -> float:
    return score / (max(length, 1) ** penalty) if penalty else score


class _BeamSearch:
    """State of one batched beam search. Rows are (active image, beam) pairs, image-major."""

    def __init__(self, models, memories, beam, max_len, length_penalty, sos_id, eos_id):
        self.models, self.k, self.max_len = models, beam, max_len
        self.penalty, self.sos_id, self.eos_id = length_penalty, sos_id, eos_id
        batch = memories[0].features.shape[0]
        self.device = memories[0].features.device
        expand = torch.arange(batch, device=self.device).repeat_interleave(beam)
        self.memories = [mem.index_select(expand) for mem in memories]
        # init once per image, then copy to its beams (memory-derived keys/values are the costly part)
        self.caches = [
            m.decoder.reorder_cache(m.decoder.init_cache(mem), expand) for m, mem in zip(models, memories)
        ]
        self.static: list[set[str]] = [set() for _ in models]
        self.images = list(range(batch))  # original index of each active image
        # Only beam 0 is alive at the start, so the K beams do not all grow the same prefix.
        self.scores = torch.full((batch, beam), float("-inf"), device=self.device)
        self.scores[:, 0] = 0.0
        self.tokens = torch.empty((batch * beam, 0), dtype=torch.long, device=self.device)
        self.logprobs = torch.zeros((batch * beam, 0), device=self.device)
        self.last = torch.full((batch * beam,), sos_id, dtype=torch.long, device=self.device)
        self.finished: list[list[Hypothesis]] = [[] for _ in range(batch)]

    def run(self, stop_check: StopCheck) -> list[list[Hypothesis]]:
        for t in range(self.max_len):
            stop_check()
            self._advance(t)
            if not self.images:
                break
        for i, img in enumerate(self.images):  # still running at max_len: keep them, unfinished
            for b in range(self.k):
                if self.scores[i, b] > float("-inf"):
                    self._add_finished(img, i * self.k + b, None, float(self.scores[i, b]))
        return self.finished

    def _step_logprobs(self) -> Tensor:
        total = None
        for j, model in enumerate(self.models):
            old = self.caches[j]
            logits, self.caches[j] = model.decoder.step(self.memories[j], self.last, old)
            # Entries `step` hands back untouched (the same tensor) still hold what init_cache derived from
            # the memory, identical for every beam of an image: re-ranking beams need not copy them.
            self.static[j] = {key for key, v in self.caches[j].items() if old.get(key) is v}
            logp = _log_probs(logits, self.sos_id)
            total = logp if total is None else total + logp
        return total / len(self.models)

    def _advance(self, t: int) -> None:
        k, n = self.k, len(self.images)
        logp = self._step_logprobs()  # (n*k, V)
        vocab = logp.shape[-1]
        cand = (self.scores.unsqueeze(-1) + logp.view(n, k, vocab)).view(n, k * vocab)
        top_scores, top_idx = cand.topk(min(2 * k, k * vocab), dim=-1)  # (n, 2k)
        src_beam, top_tok = top_idx // vocab, top_idx % vocab
        src_row = src_beam + torch.arange(n, device=self.device).unsqueeze(1) * k
        is_eos = top_tok == self.eos_id
        # <eos> among the k best candidates ends a hypothesis (fairseq rule); lower-ranked ones are dropped.
        for i, j in (is_eos[:, :k] & (top_scores[:, :k] > float("-inf"))).nonzero().tolist():
            row = int(src_row[i, j])
            self._add_finished(self.images[i], row, float(logp[row, self.eos_id]), float(top_scores[i, j]))
        # the k best non-<eos> candidates continue (stable sort keeps their rank order)
        rank = torch.arange(top_idx.shape[1], device=self.device)
        order = (is_eos.long() * top_idx.shape[1] + rank).argsort(dim=-1)[:, :k]
        new_scores = top_scores.gather(1, order)
        new_tok = top_tok.gather(1, order).view(-1)
        rows = src_row.gather(1, order).view(-1)
        self.scores = new_scores
        self.tokens = torch.cat([self.tokens[rows], new_tok.unsqueeze(1)], dim=1)
        self.logprobs = torch.cat([self.logprobs[rows], logp[rows, new_tok].unsqueeze(1)], dim=1)
        self.last = new_tok
        best_alive = self.scores.max(dim=1).values.tolist()  # one device sync for all images
        done = [self._image_done(i, t, best_alive[i]) for i in range(n)]
        if any(done):
            alive = [i for i in range(n) if not done[i]]
            alive_rows = torch.tensor(
                [i * k + b for i in alive for b in range(k)], dtype=torch.long, device=self.device
            )
            self.images = [self.images[i] for i in alive]
            self.scores = self.scores[alive]
            self.tokens, self.logprobs = self.tokens[alive_rows], self.logprobs[alive_rows]
            self.last = self.last[alive_rows]
            self.memories = [mem.index_select(alive_rows) for mem in self.memories]
            # images dropped: every entry loses rows, the static ones included
            rows = rows[alive_rows]
            self.caches = [m.decoder.reorder_cache(c, rows) for m, c in zip(self.models, self.caches)]
        elif k > 1:  # beams re-ranked within each image (one beam has nothing to re-rank): only the
            # entries that evolve need reordering
            self.caches = [self._reorder_within_images(j, rows) for j in range(len(self.models))]

    def _reorder_within_images(self, j: int, rows: Tensor) -> Cache:
        cache, static = self.caches[j], self.static[j]
        moved = self.models[j].decoder.reorder_cache(
            {k: v for k, v in cache.items() if k not in static}, rows
        )
        return {**moved, **{k: cache[k] for k in static}}

    def _add_finished(self, img: int, row: int, eos_logprob: float | None, score: float) -> None:
        hyp = Hypothesis(
            tokens=self.tokens[row].tolist(),
            score=score,
            token_logprobs=self.logprobs[row].tolist(),
            eos_logprob=eos_logprob,
        )
        hyp.rank_score = _normalised(score, hyp.length, self.penalty)
        self.finished[img].append(hyp)

    def _image_done(self, i: int, t: int, best_alive: float) -> bool:
        """Enough finished hypotheses, and no live beam (best score `best_alive`) can still beat the k-th best.

        The bound normalises a live score by its current length: exact for length_penalty=0 (scores
        only fall), the usual heuristic otherwise (a longer, more confident tail could still win).
        With one beam this is greedy's rule: the image is done when <eos> is its best next token.
        """
        if best_alive == float("-inf"):
            return True
        done = self.finished[self.images[i]]
        if len(done) < self.k:
            return False
        kth = sorted((h.rank_score for h in done), reverse=True)[self.k - 1]
        return _normalised(best_alive, t + 1, self.penalty) <= kth


def r2l_logprob(
    model: DecodingModel,
    memory: Memory,
    hyps: Sequence[Sequence[int]],
    sos_id: int = Vocab.sos_id,
    eos_id: int = Vocab.eos_id,
) -> Tensor:
    """Teacher-forced right-to-left log-probability of each id sequence: memory rows align with `hyps`.

    Returns (N,) sums of log P over reversed(tokens) + [<sos>] given [<eos>] + reversed(tokens) (the R2L
    framing training uses), with the R2L start token (<eos>) excluded from the softmax as decoding does.
    """
    device = memory.features.device
    longest = max(len(h) for h in hyps) + 1
    tgt_in = torch.full((len(hyps), longest), Vocab.pad_id, dtype=torch.long)
    tgt_out = torch.full((len(hyps), longest), Vocab.pad_id, dtype=torch.long)
    for i, h in enumerate(hyps):
        rev = list(reversed(list(h)))
        tgt_in[i, : len(rev) + 1] = torch.tensor([eos_id, *rev], dtype=torch.long)
        tgt_out[i, : len(rev) + 1] = torch.tensor([*rev, sos_id], dtype=torch.long)
    tgt_in, tgt_out = tgt_in.to(device), tgt_out.to(device)
    logp = _log_probs(model.decoder(memory, tgt_in), start_id=eos_id)
    picked = logp.gather(2, tgt_out.unsqueeze(-1)).squeeze(-1)
    return picked.masked_fill(tgt_out == Vocab.pad_id, 0.0).sum(dim=1)


def _rescore_r2l(models, memories, candidates, length_penalty, sos_id, eos_id) -> None:
    """Add the (ensemble-averaged) R2L score to every candidate and re-rank them (in place)."""
    flat = [(img, h) for img, cands in enumerate(candidates) for h in cands]
    if not flat:
        return
    device = memories[0].features.device
    index = torch.tensor([img for img, _ in flat], dtype=torch.long, device=device)
    seqs = [h.tokens for _, h in flat]
    total = torch.zeros(len(flat), device=device)
    for model, mem in zip(models, memories):
        total += r2l_logprob(model, mem.index_select(index), seqs, sos_id, eos_id)
    total /= len(models)
    for (_, hyp), r2l in zip(flat, total.tolist()):
        hyp.r2l_score = r2l
        hyp.rank_score = _normalised(hyp.score + r2l, hyp.length, length_penalty) / 2
