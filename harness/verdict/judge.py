"""Judging a paired difference: better, worse, equivalent, non-inferior or undecided, and about how
many examples would settle it. The verdict (harness/verdict/decide.py) and the gate
(harness/gate.py) both judge with these, so the two never disagree on what an interval shows.

A difference counts by its interval, never by its point estimate alone."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from harness.stats import MIN_EXAMPLES
from harness.verdict.findings import Outcome

if TYPE_CHECKING:
    from harness.results import ArmResult

# An arm that gives one answer for at least this share of the examples is degenerate: the prompt
# fails the model (a chat template that biases one label, say), so a win over it is no win.
DEGENERATE_SHARE = 0.9


def equivalent(ci_low: float, ci_high: float, margin: float) -> bool:
    """The interval inside +-margin: two one-sided tests, each at half the interval's miss rate."""
    return -margin < ci_low and ci_high < margin


def examples_to_settle(n: int, ci_low: float, ci_high: float, clearance: float) -> int | None:
    """About how many paired examples would settle a difference if it held at its estimate: the
    interval narrows as 1/sqrt(n) until its half-width is below `clearance`, how far the estimate
    is past the nearest threshold that would decide it. None when the estimate sits on a threshold,
    where no number of examples settles it."""
    if math.isclose(clearance, 0.0, abs_tol=1e-9):
        return None
    half = (ci_high - ci_low) / 2
    # The examples scored did not settle it, so fewer cannot.
    return max(n + 1, math.ceil(n * (half / clearance) ** 2))


def gain(n: int, diff: float, ci_low: float, ci_high: float, significant: bool, mde: float | None,
         margin: float) -> tuple[Outcome, int | None]:
    """Is b worth having over a? Better when significantly so by at least `margin` (the interval's
    lower end), worse when significantly below, equivalent inside +-margin; otherwise undecided,
    with about how many examples would settle it."""
    if n < MIN_EXAMPLES:
        return "too_few", None
    if mde is None and not significant:
        return "no_variation", None
    if significant and ci_low >= margin:
        return "better", None
    if significant and diff < 0:
        return "worse", None
    if equivalent(ci_low, ci_high, margin):
        return "equivalent", None
    # The thresholds: lower end over the margin, the interval inside +-margin, upper end below zero.
    needed = examples_to_settle(n, ci_low, ci_high, max(diff - margin, margin - abs(diff), -diff))
    if needed is not None and mde is not None and diff:
        # An interval clear of the thresholds still needs the test to be significant after Holm: the
        # smallest detectable effect shrinks as 1/sqrt(n) until it reaches the estimate.
        needed = max(needed, math.ceil(n * (mde / abs(diff)) ** 2))
    return "undecided", needed


def non_inferiority(n: int, diff: float, low: float, high: float, margin: float) -> tuple[Outcome, int | None]:
    """Does b lose at most `margin` against a? `low`, `high`: one-sided bounds. Non-inferior when
    the lower bound is above -margin (on enough examples to trust it), inferior when the upper bound
    is below it; otherwise undecided, with about how many examples would settle it."""
    if low >= -margin:
        return ("non_inferior" if n >= MIN_EXAMPLES else "too_few"), None
    if high < -margin:
        return "inferior", None
    return "undecided", examples_to_settle(n, low, high, abs(diff + margin))


def standing(diff: float, ci_low: float, ci_high: float, significant: bool, margin: float) -> Outcome:
    """Where b stands against a, most favourable first: better (significantly, by any amount),
    equivalent within the margin, non-inferior, worse (significantly), or undecided."""
    if significant and ci_low > 0:
        return "better"
    if equivalent(ci_low, ci_high, margin):
        return "equivalent"
    if ci_low > -margin:
        return "non_inferior"
    return "worse" if significant and diff < 0 else "undecided"


def answer_spread(predictions: Iterable[str], golds: Iterable[str]) -> tuple[str, int, int]:
    """The most frequent answer (normalised: case and surrounding space), how many times it was
    given, and how many gold answers it is."""
    normalised = [p.strip().lower() for p in predictions]
    if not normalised:
        return "", 0, 0
    top, count = Counter(normalised).most_common(1)[0]
    return top, count, sum(g.strip().lower() == top for g in golds)


def degenerate(top_count: int, gold_count: int, n: int) -> bool:
    """One answer for at least DEGENERATE_SHARE of the examples, where the gold answers are not
    that uniform themselves (an eval set that is 95% one label makes answering it no failure)."""
    return n > 0 and top_count >= DEGENERATE_SHARE * n and gold_count < DEGENERATE_SHARE * n


def degenerate_row(row: ArmResult) -> bool:
    """Whether a report row is degenerate (`degenerate`), from its counted answers."""
    a = row.answers
    return a is not None and degenerate(a.count, a.gold_count, row.n_examples)
