"""Decoding against brute force on toy decoders whose step probabilities are known exactly.

`ToyModel` implements the decoding interface: the "image" is a scalar key, and the next-token
logits are a deterministic pseudo-random function of (key, whole prefix), so the distribution is
not Markov and beam search has real work to do. Brute force enumerates every sequence.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from texscribe.decoding import Hypothesis, decode, greedy_decode, r2l_logprob
from texscribe.latex import Vocab
from texscribe.models.interface import Cache, Decoder, DecodingModel, Memory

SOS, EOS = Vocab.sos_id, Vocab.eos_id


class ToyDecoder(Decoder):
    """Logits depend on (image key, prefix); the cache holds the prefix (batch-first, grows in time)."""

    def __init__(self, vocab: int, seed: int, table: dict | None = None, eos_bias: float = 0.0):
        super().__init__()
        self.vocab, self.seed, self.table, self.eos_bias = vocab, seed, table, eos_bias

    def logits_for(self, key: int, prefix: tuple[int, ...]) -> torch.Tensor:
        if self.table is not None:
            probs = self.table.get(prefix, {EOS: 1.0})
            out = torch.full((self.vocab,), -1e9)
            for tok, p in probs.items():
                out[tok] = math.log(p)
            return out
        gen = torch.Generator().manual_seed(hash((self.seed, key, prefix)) & 0x7FFFFFFF)
        out = torch.randn(self.vocab, generator=gen) * 2.0
        out[EOS] += self.eos_bias
        return out

    def init_cache(self, memory: Memory) -> Cache:
        b = memory.features.shape[0]
        return {"prefix": torch.zeros((b, 0), dtype=torch.long), "key": memory.features[:, 0, 0].long()}

    def step(self, memory: Memory, token: torch.Tensor, cache: Cache):
        prefix = cache["prefix"]
        if prefix.shape[1] or bool((token != SOS).any()):
            prefix = torch.cat([prefix, token.unsqueeze(1)], dim=1)
        logits = torch.stack(
            [self.logits_for(int(k), tuple(p.tolist())) for k, p in zip(cache["key"], prefix)]
        )
        return logits, {"prefix": prefix, "key": cache["key"]}

    def forward(self, memory: Memory, tgt: torch.Tensor) -> torch.Tensor:
        keys = memory.features[:, 0, 0].long()
        rows = []
        for k, seq in zip(keys.tolist(), tgt.tolist()):
            rows.append(torch.stack([self.logits_for(k, tuple(seq[1 : t + 1])) for t in range(len(seq))]))
        return torch.stack(rows)


class ToyModel(torch.nn.Module):
    def __init__(self, vocab: int = 6, seed: int = 0, **kwargs):
        super().__init__()
        self.decoder = ToyDecoder(vocab, seed, **kwargs)

    def encode(self, images: torch.Tensor, pixel_mask: torch.Tensor) -> Memory:
        b = images.shape[0]
        return Memory(images[:, 0, 0, 0].view(b, 1, 1), torch.zeros(b, 1, dtype=torch.bool), 1, 1)


def toy_batch(keys: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.tensor(keys, dtype=torch.float32).view(-1, 1, 1, 1)
    return images, torch.zeros(len(keys), 1, 1, dtype=torch.bool)


def step_logprob(models, key, prefix, token, start=SOS) -> float:
    """Ensemble-averaged log P(token | prefix), with <pad> and the start token excluded as decoding does."""
    total = 0.0
    for m in models:
        logits = m.decoder.logits_for(key, tuple(prefix)).clone()
        logits[0] = logits[start] = float("-inf")
        total += float(torch.log_softmax(logits, -1)[token])
    return total / len(models)


def sequence_logprob(models, key, tokens, finished) -> float:
    score = sum(step_logprob(models, key, tokens[:i], t) for i, t in enumerate(tokens))
    return score + (step_logprob(models, key, tokens, EOS) if finished else 0.0)


def r2l_sequence_logprob(models, key, tokens) -> float:
    """R2L framing: reversed tokens then <sos> as the end marker, <eos> as the (excluded) start."""
    rev = list(reversed(tokens))
    score = sum(step_logprob(models, key, rev[:i], t, start=EOS) for i, t in enumerate(rev))
    return score + step_logprob(models, key, rev, SOS, start=EOS)


def brute_force(models, key, max_len, penalty, vocab=6, r2l=False):
    """Best (tokens, finished) over all sequences: up to max_len-1 tokens + <eos>, or max_len tokens."""
    best, best_val = None, -math.inf
    symbols = range(3, vocab)
    for n in range(max_len + 1):
        for seq in itertools.product(symbols, repeat=n):
            finished = n < max_len
            score = sequence_logprob(models, key, list(seq), finished)
            length = n + int(finished)
            if r2l:
                rev = r2l_sequence_logprob(models, key, list(seq))
                val = (score + rev) / (2 * length**penalty)
            else:
                val = score / (length**penalty if penalty else 1)
            if val > best_val:
                best, best_val = (list(seq), finished), val
    return best, best_val


@pytest.mark.parametrize("penalty", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exhaustive_beam_equals_brute_force(seed, penalty):
    model = ToyModel(seed=seed, eos_bias=1.5)  # <eos> common enough that both endings compete
    keys = [5, 6, 7]
    # 3 symbols, max_len 3: at most 27 live beams, so beam=27 never prunes anything
    results = decode(model, *toy_batch(keys), beam=27, max_len=3, length_penalty=penalty)
    for key, hyp in zip(keys, results):
        (tokens, finished), val = brute_force([model], key, 3, penalty)
        assert (hyp.tokens, hyp.finished) == (tokens, finished)
        assert hyp.rank_score == pytest.approx(val, abs=1e-5)


def test_hypothesis_scores_are_the_sum_of_step_logprobs():
    model = ToyModel(seed=3, eos_bias=1.0)
    for hyp, key in zip(decode(model, *toy_batch([1, 2]), beam=4, max_len=6), [1, 2]):
        assert len(hyp.token_logprobs) == len(hyp.tokens)
        expected = sequence_logprob([model], key, hyp.tokens, hyp.finished)
        assert hyp.score == pytest.approx(expected, abs=1e-5)
        assert hyp.score == pytest.approx(sum(hyp.token_logprobs) + (hyp.eos_logprob or 0.0), abs=1e-5)
        for i, tok in enumerate(hyp.tokens):
            assert hyp.token_logprobs[i] == pytest.approx(
                step_logprob([model], key, hyp.tokens[:i], tok), abs=1e-5
            )


def test_beam_finds_the_sequence_greedy_misses():
    # greedy takes 3 (p=.6) then faces a flat tail; 4 (p=.4) is followed by a near-certain <eos>
    table = {
        (): {3: 0.6, 4: 0.4},
        (3,): {3: 0.34, 4: 0.33, EOS: 0.33},
        (4,): {EOS: 0.99, 3: 0.01},
    }
    model = ToyModel(table=table)
    images, mask = toy_batch([0])
    assert greedy_decode(model, images, mask, max_len=5) == [[3, 3]]  # log .6 + log .34 = -1.59
    (hyp,) = decode(model, images, mask, beam=2, max_len=5, length_penalty=0.0)
    assert hyp.tokens == [4] and hyp.finished
    assert hyp.score == pytest.approx(math.log(0.4) + math.log(0.99), abs=1e-5)


@pytest.mark.parametrize("seed", [0, 4, 5])
def test_beam_one_equals_greedy_and_batching_does_not_change_results(seed):
    model = ToyModel(vocab=8, seed=seed, eos_bias=0.5)
    keys = [11, 12, 13, 14, 15]
    images, mask = toy_batch(keys)
    greedy = greedy_decode(model, images, mask, max_len=12)
    beam1 = decode(model, images, mask, beam=1, max_len=12)
    assert [h.tokens for h in beam1] == greedy
    # rows finish at different steps (batch compaction) yet match one-at-a-time decoding
    assert len({len(g) for g in greedy}) > 1
    for i, key in enumerate(keys):
        assert greedy_decode(model, *toy_batch([key]), max_len=12) == [greedy[i]]
        single = decode(model, *toy_batch([key]), beam=3, max_len=12)
        assert single[0].tokens == decode(model, images, mask, beam=3, max_len=12)[i].tokens


def test_greedy_respects_max_len_and_never_emits_specials():
    model = ToyModel(vocab=8, seed=9, eos_bias=-50.0)  # <eos> essentially never chosen
    out = greedy_decode(model, *toy_batch([1, 2]), max_len=7)
    assert all(len(seq) == 7 for seq in out)
    assert all(t >= 3 for seq in out for t in seq)
    (hyp, _) = decode(model, *toy_batch([1, 2]), beam=2, max_len=7)
    assert len(hyp.tokens) == 7 and not hyp.finished and hyp.eos_logprob is None


def test_ensemble_of_one_model_is_that_model():
    model = ToyModel(vocab=8, seed=6, eos_bias=0.5)
    images, mask = toy_batch([3, 4, 5])
    for beam in (1, 3):
        alone = decode(model, images, mask, beam=beam, max_len=10)
        for ensemble in ([model], [model, model]):
            together = decode(ensemble, images, mask, beam=beam, max_len=10)
            for a, b in zip(alone, together):
                assert a.tokens == b.tokens
                assert a.score == pytest.approx(b.score, abs=1e-5)


def test_ensemble_averages_step_logprobs():
    models = [ToyModel(seed=7, eos_bias=1.5), ToyModel(seed=8, eos_bias=1.5)]
    results = decode(models, *toy_batch([1, 2]), beam=27, max_len=3, length_penalty=1.0)
    for key, hyp in zip([1, 2], results):
        (tokens, finished), val = brute_force(models, key, 3, 1.0)
        assert (hyp.tokens, hyp.finished) == (tokens, finished)
        assert hyp.rank_score == pytest.approx(val, abs=1e-5)


def test_r2l_logprob_matches_stepwise_reverse_scoring():
    model = ToyModel(seed=10)
    images, mask = toy_batch([1, 2, 3])
    memory = model.encode(images, mask)
    seqs = [[3, 4, 5], [], [5, 5]]
    got = r2l_logprob(model, memory, seqs)
    for key, seq, value in zip([1, 2, 3], seqs, got.tolist()):
        assert value == pytest.approx(r2l_sequence_logprob([model], key, seq), abs=1e-5)


def test_r2l_rescoring_picks_the_best_combined_score():
    model = ToyModel(seed=15, eos_bias=1.5)
    results = decode(model, *toy_batch([1, 2]), beam=27, max_len=3, r2l_rescore=True)
    l2r_only = decode(model, *toy_batch([1, 2]), beam=27, max_len=3)
    assert [h.tokens for h in results] != [h.tokens for h in l2r_only]  # the rescoring matters here
    for key, hyp in zip([1, 2], results):
        (tokens, _), val = brute_force([model], key, 3, 1.0, r2l=True)
        assert hyp.tokens == tokens
        assert hyp.rank_score == pytest.approx(val, abs=1e-5)
        assert hyp.r2l_score is not None
        assert all(isinstance(a, Hypothesis) and a.rank_score <= hyp.rank_score for a in hyp.alternatives)


def test_stop_check_runs_before_encoding_and_each_step_and_what_it_raises_ends_decoding():
    model = ToyModel(vocab=8, seed=9, eos_bias=-50.0)  # <eos> essentially never chosen: runs to max_len
    assert isinstance(model, DecodingModel)
    calls = []
    decode(model, *toy_batch([1, 2]), beam=2, max_len=7, r2l_rescore=True, stop_check=lambda: calls.append(1))
    assert len(calls) == 1 + 7 + 1  # encoding, 7 steps, the R2L pass

    class Stop(Exception):
        pass

    def stop_after_two_steps() -> None:
        calls.append(1)
        if len(calls) > 3:  # encoding and two steps passed
            raise Stop

    steps, real_step = [], model.decoder.step

    def counted_step(*args):
        steps.append(1)
        return real_step(*args)

    model.decoder.step = counted_step
    calls.clear()
    with pytest.raises(Stop):
        decode(model, *toy_batch([1, 2]), beam=1, max_len=50, stop_check=stop_after_two_steps)
    assert len(steps) == 2


def test_bad_arguments():
    model = ToyModel()
    with pytest.raises(ValueError, match="beam"):
        decode(model, *toy_batch([1]), beam=0)
    with pytest.raises(ValueError, match="at least one"):
        decode([], *toy_batch([1]))


@pytest.mark.parametrize(
    "decoder",
    [
        {"name": "transformer", "num_layers": 2, "num_heads": 4, "ff_dim": 64, "dropout": 0.0},
        {"name": "rnn_attention", "cell": "lstm", "hidden_dim": 32, "embed_dim": 16, "attn_dim": 16},
    ],
    ids=["transformer", "rnn_attention"],
)
def test_real_decoders_beam_one_equals_greedy_and_ensemble_of_one(decoder):
    """The same properties on the project's own (untrained) decoders, with their real caches."""
    from texscribe.config import ModelConfig
    from texscribe.models.registry import build_model

    encoder = {"name": "densenet", "growth": 8, "depth": 4, "num_blocks": 3}
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, encoder=encoder, decoder=decoder), vocab_size=12).eval()
    images = torch.rand(3, 1, 32, 64)
    mask = torch.zeros(3, 32, 64, dtype=torch.bool)
    mask[1, :, 48:] = True  # a padded image in the batch
    images[mask.unsqueeze(1)] = 0.0
    greedy = greedy_decode(model, images, mask, max_len=10)
    assert [h.tokens for h in decode(model, images, mask, beam=1, max_len=10)] == greedy
    beam = decode(model, images, mask, beam=3, max_len=10)
    ensemble = decode([model, model], images, mask, beam=3, max_len=10)
    assert [h.tokens for h in beam] == [h.tokens for h in ensemble]
    # every beam hypothesis's score equals a teacher-forced pass over its tokens: the cache re-ranking
    # (with the memory-derived entries left in place) fed each step the right history
    memory = model.encode(images, mask)
    checked = 0
    for i, hyp in ((i, h) for i, best in enumerate(beam) for h in [best, *best.alternatives]):
        checked += 1
        assert all(t >= 3 for t in hyp.tokens) and len(hyp.tokens) <= 10
        tgt = torch.tensor([[SOS, *hyp.tokens]])
        with torch.inference_mode():
            logp = torch.log_softmax(model.decoder(memory.index_select(torch.tensor([i])), tgt)[0], -1)
        wanted = [*hyp.tokens, EOS] if hyp.finished else hyp.tokens
        # <pad>/<sos> are excluded from decoding's softmax: renormalise the teacher-forced one the same way
        allowed = torch.logsumexp(logp[:, EOS:], -1)  # ids 0 (<pad>) and 1 (<sos>) dropped
        expected = sum(float(logp[t, tok] - allowed[t]) for t, tok in enumerate(wanted))
        assert hyp.score == pytest.approx(expected, abs=1e-3)
    assert checked > len(beam)  # the alternatives come from re-ranked beams
    rescored = decode(model, images, mask, beam=2, max_len=6, r2l_rescore=True)
    assert all(isinstance(h.r2l_score, float) for h in rescored)
