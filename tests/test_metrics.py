"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from texscribe import metrics
from texscribe.latex import latex_string

# Two predictions: one substitution in a 5-token ref; two deletions from a 6-token ref.
PREDS = [["a", "b", "c", "d", "e"], ["x", "y", "z", "w"]]
REFS = [["a", "b", "c", "d", "f"], ["x", "y", "z", "w", "v", "u"]]


def test_bleu4_matches_hand_computation():
    # clipped n-gram matches / hypothesis n-grams, summed over the corpus:
    # 1-grams (4+4)/(5+4), 2-grams (3+3)/(4+3), 3-grams (2+2)/(3+2), 4-grams (1+1)/(2+1)
    p = [8 / 9, 6 / 7, 4 / 5, 2 / 3]
    # c = 9 hypothesis tokens < r = 11 reference tokens -> brevity penalty exp(1 - 11/9)
    expected = math.exp(1 - 11 / 9) * math.exp(sum(math.log(x) for x in p) / 4)
    assert metrics.bleu4(PREDS, REFS) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.6393, abs=1e-4)


def test_bleu4_clips_repeated_ngrams_and_has_no_penalty_when_longer():
    # "a a a a" vs "a b a b": unigram matches clipped to 2 of 4; no bigram "a a" in the ref -> 0
    assert metrics.bleu4([["a"] * 4], [["a", "b", "a", "b"]]) == 0.0
    # identical corpus -> 1; a longer hypothesis has brevity penalty 1
    assert metrics.bleu4(REFS, REFS) == pytest.approx(1.0)
    long_pred = [["a", "b", "c", "d", "e", "f"]]
    ref = [["a", "b", "c", "d", "e"]]
    # p1=5/6, p2=4/5, p3=3/4, p4=2/3, BP=1
    expected = (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25
    assert metrics.bleu4(long_pred, ref) == pytest.approx(expected)


def test_edit_distance_metrics_by_hand():
    # token distances 1 and 2; max lengths 5 and 6; ref lengths 5 and 6
    assert metrics.edit_score(PREDS, REFS) == pytest.approx(1 - 3 / 11)
    assert metrics.wer(PREDS, REFS) == pytest.approx(3 / 11)
    # joined strings "abcde"/"abcdf" (1 edit) and "xyzw"/"xyzwvu" (2 edits), 11 ref chars
    assert metrics.cer(PREDS, REFS) == pytest.approx(3 / 11)
    assert metrics.exprate(PREDS, REFS) == 0.0
    assert metrics.within_k_errors(PREDS, REFS, 1) == 0.5
    assert metrics.within_k_errors(PREDS, REFS, 2) == 1.0


def test_cer_counts_characters_of_control_words():
    # "\alpha" -> "\beta" is one token edit but several character edits
    pred, ref = [["\\beta", "+", "1"]], [["\\alpha", "+", "1"]]
    assert metrics.wer(pred, ref) == pytest.approx(1 / 3)
    expected_chars = len("\\alpha+1")
    from rapidfuzz.distance import Levenshtein

    assert metrics.cer(pred, ref) == pytest.approx(
        Levenshtein.distance("\\beta+1", "\\alpha+1") / expected_chars
    )


def test_compute_all_and_course_average():
    out = metrics.compute_all(PREDS, REFS)
    assert out["n"] == 2
    assert out["exp_rate"] == 0.0 and out["le1"] == 0.5 and out["le2"] == 1.0
    assert out["course_average"] == pytest.approx((out["bleu4"] + out["exp_rate"] + out["edit_score"]) / 3)
    assert metrics.course_average(PREDS, REFS) == pytest.approx(out["course_average"])
    perfect = metrics.compute_all(REFS, REFS)
    assert (
        perfect["exp_rate"] == 1.0
        and perfect["cer"] == 0.0
        and perfect["course_average"] == pytest.approx(1.0)
    )


def test_predictions_and_references_are_normalised_the_same_way():
    # raw strings are tokenised; x^2 == x^{2}; \le == \leq; spacing commands are ignored
    preds = ["x^2 \\le y", ["\\frac", "1", "2"]]
    refs = [["x", "^", "{", "2", "}", "\\leq", "y"], "\\frac{1}{2}\\,"]
    assert metrics.exprate(preds, refs) == 1.0
    assert metrics.compute_all(preds, refs)["wer"] == 0.0


def test_mismatched_lengths_and_empty_inputs():
    with pytest.raises(ValueError, match="parallel"):
        metrics.exprate([["a"]], [])
    assert metrics.compute_all([], [])["n"] == 0
    # empty prediction against a non-empty reference: all errors, BLEU 0
    out = metrics.compute_all([[]], [["a", "b"]])
    assert out["bleu4"] == 0.0 and out["edit_score"] == 0.0 and out["wer"] == 1.0


def test_malformed_predictions_are_scored_not_rejected():
    # an unbalanced model output is compared as emitted: one missing "}" is one token edit
    pred, ref = [["x", "^", "{", "2"]], [["x", "^", "{", "2", "}"]]
    assert metrics.within_k_errors(pred, ref, 1) == 1.0 and metrics.exprate(pred, ref) == 0.0
    assert metrics.compute_all(pred, ref)["wer"] == pytest.approx(1 / 5)
    assert latex_string(["x", "ab"]) == "xab"  # not single tokens: glued rather than failing
