"""Statistics on per-example scores (scipy does the work).

Strategies are scored on the same eval examples, so they are compared pairwise per example: the
difference of two strategies' mean scores gets a paired bootstrap interval and a paired test
(exact McNemar for 0/1 scores, an exact or Monte Carlo sign-flip permutation test otherwise), the
p-values are Holm-corrected across all pairs, and each pair states the smallest difference this
many examples could detect. Two strategies are shown equivalent within a margin by two one-sided
tests on the same paired bootstrap."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from harness.results import Pair, PairedDifference

CONFIDENCE = 0.95
# Fewer paired examples than this and no difference is judged, by the verdict or the gate: every rule
# reads the percentile bootstrap interval, which is too narrow on small samples (its coverage falls
# short of 95% by several points below about 30 examples, and it is a single point when the two
# strategies agree on every example), and the normal approximations behind the detectable effect
# and the examples needed need about as many.
MIN_EXAMPLES = 30


def bootstrap_ci(scores, seed: int, confidence: float = CONFIDENCE, n_resamples: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean score."""
    from scipy.stats import bootstrap

    x = np.asarray(scores, dtype=float)
    if len(x) < 2 or np.all(x == x[0]):
        # No spread to resample: scipy would warn and return nan; the interval is the point.
        return float(x.mean()), float(x.mean())
    res = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                    method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _mean_difference(a, b, axis=-1):
    return np.mean(b, axis=axis) - np.mean(a, axis=axis)


def _paired_bootstrap(a, b, seed: int, confidence: float, n_resamples: int):
    """scipy's paired percentile bootstrap of mean(b) - mean(a), or None when the differences do not
    vary (scipy would warn and return nan; the interval is the point)."""
    from scipy.stats import bootstrap

    d = b - a
    if len(d) < 2 or np.all(d == d[0]):
        return None
    return bootstrap((a, b), _mean_difference, paired=True, vectorized=True, confidence_level=confidence,
                     n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))


def paired_bootstrap_ci(a, b, seed: int, confidence: float = CONFIDENCE,
                        n_resamples: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(b) - mean(a), resampling examples (pairs) together."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    res = _paired_bootstrap(a, b, seed, confidence, n_resamples)
    if res is None:
        return float(np.mean(b - a)), float(np.mean(b - a))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


class Equivalence(NamedTuple):
    equivalent: bool
    p_value: float
    ci_low: float  # the paired interval of mean(b) - mean(a) at 1 - 2 alpha
    ci_high: float


def tost(a, b, margin: float, alpha: float = 0.05, seed: int = 0, n_resamples: int = 2000) -> Equivalence:
    """Whether mean(b) - mean(a) is shown to lie within (-margin, +margin), by two one-sided tests on
    the paired percentile bootstrap (0/1 and graded scores alike).

    Each end of the interval at 1 - 2 alpha is a one-sided (1 - alpha) bound, so both nulls (the
    difference is at most -margin; it is at least +margin) are rejected at alpha exactly when the
    whole interval lies inside the margin: that decides. The p-value is the larger of the two
    one-sided bootstrap p-values, the shares of resampled differences at or beyond each margin; it
    agrees with the interval up to one resample. With the seed `paired_comparisons` used, the
    interval at alpha = (1 - confidence) / 2 is the one stored on the pair."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    res = _paired_bootstrap(a, b, seed, 1 - 2 * alpha, n_resamples)
    if res is None:
        d = float(np.mean(b - a))
        return Equivalence(abs(d) < margin, 0.0 if abs(d) < margin else 1.0, d, d)
    resampled = res.bootstrap_distribution
    p = max(float(np.mean(resampled <= -margin)), float(np.mean(resampled >= margin)))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return Equivalence(-margin < low and high < margin, p, low, high)


def is_binary(*samples) -> bool:
    return all(np.isin(np.asarray(s, dtype=float), (0.0, 1.0)).all() for s in samples)


def mcnemar_exact(a, b) -> tuple[float, int, int]:
    """Exact (binomial) McNemar test on paired 0/1 scores: (two-sided p, #only a right, #only b right).

    Only the discordant examples carry information; under the null each is equally likely to
    favour either side."""
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    only_a = int(np.sum((a == 1) & (b == 0)))
    only_b = int(np.sum((a == 0) & (b == 1)))
    if only_a + only_b == 0:
        return 1.0, 0, 0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue), only_a, only_b


def paired_permutation_p(a, b, seed: int, n_resamples: int = 9999) -> float:
    """Two-sided sign-flip permutation test of mean(b) - mean(a); exact when 2**n <= n_resamples."""
    from scipy.stats import permutation_test

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.all(a == b):
        return 1.0
    res = permutation_test((a, b), _mean_difference, permutation_type="samples", vectorized=True,
                           n_resamples=n_resamples, alternative="two-sided", rng=np.random.default_rng(seed))
    return float(res.pvalue)


def holm(p_values) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (scipy has only FDR control)."""
    m = len(p_values)
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def min_detectable_effect(a, b, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Smallest true difference of means a two-sided paired test at `alpha` detects with `power`,
    by the normal approximation: (z[1 - alpha/2] + z[power]) * sd(differences) / sqrt(n).

    With no variation in the differences (the two strategies agree on every example) the paired
    sd says nothing about the next examples, so the unpaired sd stands in; with no variation at
    all there is nothing to estimate from (None)."""
    from scipy.stats import norm

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(a)
    if n < 2:
        return None
    sd = float(np.std(b - a, ddof=1)) or math.sqrt(float(np.var(a, ddof=1) + np.var(b, ddof=1)))
    if sd == 0:
        return None
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * sd / math.sqrt(n))


def _paired(a, b, *, seed: int, alpha: float, power: float, confidence: float) -> dict:
    out = {"n": len(a), "diff": float(np.mean(b) - np.mean(a))}
    out["ci_low"], out["ci_high"] = paired_bootstrap_ci(a, b, seed, confidence)
    if is_binary(a, b):
        out["test"] = "mcnemar_exact"
        out["p_value"], out["only_a"], out["only_b"] = mcnemar_exact(a, b)
    else:
        out["test"] = "paired_permutation"
        out["p_value"] = paired_permutation_p(a, b, seed)
    out["mde"] = min_detectable_effect(a, b, alpha, power)
    return out


def paired_difference(a, b, *, seed: int, alpha: float, power: float,
                      confidence: float = CONFIDENCE) -> PairedDifference:
    """Everything the report says about b versus a on the same examples (`alpha` and `power` set the
    smallest detectable effect)."""
    return PairedDifference(**_paired(a, b, seed=seed, alpha=alpha, power=power, confidence=confidence))


def paired_comparisons(scores: dict[str, dict[str, float]], *, seed: int, alpha: float, power: float,
                       confidence: float = CONFIDENCE, apart: frozenset[str] = frozenset()) -> list[Pair]:
    """Every pair of strategies (in the given order), paired by example id, `diff` = b - a, with
    Holm-adjusted p-values over its family. `scores` maps strategy -> example id -> score.

    The pairs of strategies outside `apart` are one family; the pairs that involve a strategy in
    `apart` (a degenerate arm, which the verdict does not judge against) are another, so adding
    one changes no test of the others. The smallest detectable effect is computed at alpha / (pairs
    in the family), Holm's strictest step, so a difference that size is found significant after
    correction whatever the other pairs do."""
    names = list(scores)
    every = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    out: dict[tuple[str, str], Pair] = {}
    for family in ([p for p in every if not apart & set(p)], [p for p in every if apart & set(p)]):
        pairs = []
        for a, b in family:
            ids = sorted(scores[a].keys() & scores[b].keys())
            x = np.array([scores[a][k] for k in ids], dtype=float)
            y = np.array([scores[b][k] for k in ids], dtype=float)
            pairs.append({"a": a, "b": b, **_paired(x, y, seed=seed, alpha=alpha / len(family), power=power,
                                                     confidence=confidence)})
        adjusted = holm([p["p_value"] for p in pairs])
        out.update(((p["a"], p["b"]), Pair(**p, p_holm=p_holm, significant=p_holm < alpha, holm_over=len(family)))
                   for p, p_holm in zip(pairs, adjusted))
    return [out[p] for p in every]
