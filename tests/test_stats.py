"""Paired statistics checked against scipy and against values worked out by hand."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.stats import (
    holm,
    is_binary,
    mcnemar_exact,
    min_detectable_effect,
    paired_bootstrap_ci,
    paired_comparisons,
    paired_difference,
    paired_permutation_p,
    tost,
)


def test_holm_matches_published_adjustment():
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") -> 0.03 0.06 0.06 0.02
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Step-down: adjusted values never decrease along the sorted order, and stop at 1.
    assert holm([0.5, 0.4, 0.001]) == pytest.approx([0.8, 0.8, 0.003])
    assert holm([0.9, 0.8]) == [1.0, 1.0]
    assert holm([]) == []


def test_exact_mcnemar_by_hand():
    # 1 example only a gets right, 9 only b gets right, 90 both or neither: under the null each
    # discordant example is a fair coin, so p = 2 * P(X <= 1), X ~ Binomial(10, 1/2) = 2 * 11 / 1024.
    a = np.array([1] * 1 + [0] * 9 + [1] * 50 + [0] * 40)
    b = np.array([0] * 1 + [1] * 9 + [1] * 50 + [0] * 40)
    p, only_a, only_b = mcnemar_exact(a, b)
    assert (only_a, only_b) == (1, 9)
    assert p == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(a, a) == (1.0, 0, 0)


def test_exact_mcnemar_equals_scipy_exact_sign_flip_test():
    # For 0/1 scores the exact paired permutation test of the mean difference is McNemar's exact
    # test: only discordant pairs change sign. n = 12 keeps scipy's permutation test exact.
    a = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0])
    b = np.array([1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1])
    res = sps.permutation_test((a, b), lambda x, y, axis: np.mean(y - x, axis=axis), permutation_type="samples",
                               vectorized=True, alternative="two-sided")
    assert mcnemar_exact(a, b)[0] == pytest.approx(res.pvalue)


def test_permutation_p_equals_full_enumeration():
    rng = np.random.default_rng(0)
    a = rng.random(10)
    b = a + rng.normal(0.15, 0.2, 10)
    d = b - a
    observed = abs(d.mean())
    flips = [abs(np.mean(d * np.array(signs))) for signs in itertools.product((1, -1), repeat=10)]
    by_hand = np.mean([f >= observed - 1e-12 for f in flips])
    assert paired_permutation_p(a, b, seed=1) == pytest.approx(by_hand)
    assert paired_permutation_p(a, a, seed=1) == 1.0


def test_paired_bootstrap_equals_scipy_on_differences():
    # Resampling pairs together is resampling the per-example differences: scipy's one-sample
    # bootstrap of the differences, with the same generator, gives the same interval.
    rng = np.random.default_rng(3)
    a = (rng.random(80) < 0.6).astype(float)
    b = (rng.random(80) < 0.7).astype(float)
    lo, hi = paired_bootstrap_ci(a, b, seed=7)
    ref = sps.bootstrap((b - a,), np.mean, n_resamples=2000, method="percentile",
                        rng=np.random.default_rng(7)).confidence_interval
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert lo <= np.mean(b - a) <= hi
    # Identical differences everywhere: scipy would return nan, the interval is the point.
    assert paired_bootstrap_ci([0, 1, 1], [1, 2, 2], seed=0) == (1.0, 1.0)


def test_min_detectable_effect_by_hand_and_power_by_scipy():
    a = np.array([0, 1] * 50, dtype=float)
    b = np.array([1, 1, 0, 1] * 25, dtype=float)
    sd = np.std(b - a, ddof=1)
    mde = min_detectable_effect(a, b, alpha=0.05, power=0.8)
    assert mde == pytest.approx((1.959964 + 0.841621) * sd / 10, rel=1e-5)
    # A true difference of that size is found by a two-sided z-test with 80% power.
    z = mde / (sd / 10)
    z_crit = sps.norm.ppf(0.975)
    assert sps.norm.cdf(z - z_crit) + sps.norm.cdf(-z - z_crit) == pytest.approx(0.8, abs=1e-3)
    # A stricter alpha or more power needs a bigger effect; four times the data halves it.
    assert min_detectable_effect(a, b, alpha=0.01) > mde
    assert min_detectable_effect(a, b, power=0.9) > mde
    assert min_detectable_effect(np.tile(a, 4), np.tile(b, 4)) == pytest.approx(mde / 2, rel=0.01)


def test_min_detectable_effect_when_strategies_agree_everywhere():
    a = np.array([1, 0, 1, 1, 0, 1], dtype=float)
    # No discordant example: the paired sd is 0, the unpaired sd stands in.
    expected = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * math.sqrt(2 * np.var(a, ddof=1)) / math.sqrt(6)
    assert min_detectable_effect(a, a) == pytest.approx(expected)
    assert min_detectable_effect(np.ones(5), np.ones(5)) is None


def test_paired_difference_picks_the_test_by_score_type():
    binary = paired_difference([1, 0, 1, 0], [1, 1, 1, 0], seed=0, alpha=0.05, power=0.8)
    assert binary.test == "mcnemar_exact" and (binary.only_a, binary.only_b) == (0, 1)
    assert binary.diff == pytest.approx(0.25)
    graded = paired_difference([0.5, 0.2, 0.9], [0.6, 0.4, 0.9], seed=0, alpha=0.05, power=0.8)
    assert graded.test == "paired_permutation" and graded.only_a is None
    assert is_binary([0, 1.0], [1]) and not is_binary([0, 0.5])


def test_comparisons_pair_by_example_id_and_correct_for_multiplicity():
    rng = np.random.default_rng(5)
    ids = [f"ex{i}" for i in range(60)]
    base = rng.random(60) < 0.5
    better = base | (rng.random(60) < 0.5)
    scores = {
        "zero_shot": dict(zip(ids, base.astype(float))),
        # Stored in another order, with one extra example the others lack: pairing is by id.
        "few_shot": dict(reversed(list(zip(ids, better.astype(float))))) | {"extra": 1.0},
        "rag": dict(zip(ids, base.astype(float))),
    }
    pairs = paired_comparisons(scores, seed=1, alpha=0.05, power=0.8)
    assert [(p.a, p.b) for p in pairs] == [("zero_shot", "few_shot"), ("zero_shot", "rag"), ("few_shot", "rag")]
    first = pairs[0]
    assert first.n == 60 and first.diff == pytest.approx(better.mean() - base.mean())
    assert first.p_value == pytest.approx(mcnemar_exact(base, better)[0])
    assert [p.p_holm for p in pairs] == pytest.approx(holm([p.p_value for p in pairs]))
    assert first.significant == (first.p_holm < 0.05)
    assert pairs[1].diff == 0 and pairs[1].p_value == 1.0 and not pairs[1].significant
    # The detectable effect is computed at Holm's strictest level, alpha / 3.
    strictest = min_detectable_effect(base.astype(float), better.astype(float), alpha=0.05 / 3)
    assert first.mde == pytest.approx(strictest)


def test_tost_agrees_with_the_paired_t_tost_on_many_graded_scores():
    # On 2,000 examples the bootstrap distribution of the mean difference is normal, so its two
    # one-sided tests match scipy's one-sample t-tests of the differences against each margin.
    rng = np.random.default_rng(11)
    a = rng.random(2000)
    b = a + rng.normal(0.004, 0.1, 2000)
    d = b - a
    for margin, equivalent in [(0.004, False), (0.012, True), (0.02, True)]:
        result = tost(a, b, margin, alpha=0.05, seed=0)
        t_p = max(sps.ttest_1samp(d, -margin, alternative="greater").pvalue,
                  sps.ttest_1samp(d, margin, alternative="less").pvalue)
        assert result.p_value == pytest.approx(t_p, abs=0.01)
        assert result.equivalent == equivalent == (t_p < 0.05)


def test_tost_is_the_paired_interval_at_one_minus_two_alpha_inside_the_margin():
    rng = np.random.default_rng(4)
    a = (rng.random(300) < 0.7).astype(float)
    b = np.where(rng.random(300) < 0.05, 1 - a, a)
    interval = paired_bootstrap_ci(a, b, seed=3, confidence=0.9)
    assert tost(a, b, 0.05, alpha=0.05, seed=3)[2:] == pytest.approx(interval)
    for margin in (0.01, 0.02, 0.03, 0.05):
        result = tost(a, b, margin, alpha=0.05, seed=3)
        assert result.equivalent == (-margin < result.ci_low and result.ci_high < margin)
        # The p-value decides the same, up to one resample of the 2,000.
        assert result.equivalent == (result.p_value < 0.05) or abs(result.p_value - 0.05) <= 1 / 2000
    # At alpha = (1 - 0.95) / 2 with the same seed, the interval is the one a comparison stores:
    # the one the recommendation reads.
    ids = [f"ex{i}" for i in range(300)]
    pair = paired_comparisons({"a": dict(zip(ids, a)), "b": dict(zip(ids, b))}, seed=3, alpha=0.05, power=0.8)[0]
    assert tost(a, b, 0.05, alpha=0.025, seed=3)[2:] == pytest.approx((pair.ci_low, pair.ci_high))


def test_tost_without_spread_in_the_differences():
    # Identical arms: the interval is the point 0, inside any margin.
    same = [1.0, 0.0, 1.0, 1.0]
    assert tost(same, same, 0.02) == (True, 0.0, 0.0, 0.0)
    # Every example 1 point better: outside a margin below 1, inside one above.
    assert tost([0.0] * 5, [1.0] * 5, 0.5) == (False, 1.0, 1.0, 1.0)
    assert tost([0.0] * 5, [1.0] * 5, 1.5).equivalent


def test_pairs_with_an_arm_set_apart_are_a_holm_family_of_their_own():
    rng = np.random.default_rng(0)
    scores = {name: {f"ex{i}": float(v) for i, v in enumerate(rng.integers(0, 2, 60))} for name in "abc"}
    alone = {(p.a, p.b): p for p in paired_comparisons({k: scores[k] for k in "ab"}, seed=0, alpha=0.05, power=0.8)}
    both = {(p.a, p.b): p for p in paired_comparisons(scores, seed=0, alpha=0.05, power=0.8, apart=frozenset("c"))}
    # Adding c, set apart, changes nothing of the a-b test.
    assert both[("a", "b")] == alone[("a", "b")].model_copy(update={"holm_over": 1})
    assert both[("a", "c")].holm_over == both[("b", "c")].holm_over == 2
