"""Properties of the verdict over generated comparisons: rows, costs and paired statistics built as
in test_decide, from per-example scores and tokens that hypothesis draws."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from harness.stats import MIN_EXAMPLES
from harness.verdict import judge
from tests.test_decide import decide, found, one, strategy

# Each example's statistics run the real bootstrap and permutation tests, so a few dozen cases.
FAST = settings(max_examples=40, deadline=None)

# Every arm's latency is proportional to its tokens, so the pooled self-hosted price per token is
# the same whatever arms are compared.
MS_PER_TOKEN = 2.0


@st.composite
def arm_scores(draw, k: int, *, graded: bool, n=st.integers(MIN_EXAMPLES, 120)) -> list[np.ndarray]:
    """k arms' scores on the same examples, correlated through each example's difficulty as real arms
    are: 0/1, or graded within [0.1, 1] (leaving room below for a worse arm)."""
    size = draw(n)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    difficulty = rng.normal(0.0, 1.0, size)
    out = []
    for _ in range(k):
        shift, noise = draw(st.floats(-1.5, 1.5)), draw(st.sampled_from([0.0, 0.3, 1.0]))
        latent = difficulty + shift + noise * rng.normal(0.0, 1.0, size)
        out.append(0.1 + 0.9 / (1 + np.exp(-latent)) if graded else (latent > 0).astype(float))
    return out


@st.composite
def prompt_tokens(draw, size: int) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return draw(st.integers(20, 800)) + rng.integers(0, draw(st.sampled_from([1, 50])), size)


def build(name: str, scores, prompts, *, fine_tuned: bool = False, latency: float | None = None, answers=None):
    """An arm as test_decide builds one, and its per-example (prompt, output, cached) tokens."""
    mean = float(np.mean(prompts))
    row = strategy(name, [float(s) for s in scores], prompt=mean, training=fine_tuned,
                   latency=MS_PER_TOKEN * mean if latency is None else latency, answers=answers)
    return row, {f"ex{i}": (float(p), 0.0, 0.0) for i, p in enumerate(prompts)}


def recommendation(*arms):
    rec = decide(*(row for row, _ in arms), tokens={row[0].name: tokens for row, tokens in arms})
    # `pytest --hypothesis-show-statistics` shows which verdicts the cases reached.
    event(f"{rec.kind} ({rec.cause})" if rec.cause else rec.kind)
    return rec


def verdict(*arms) -> tuple:
    """The verdict as data: its kind and cause, the arms it names, and for a verdict about one
    fine-tuned arm, that arm's judgement. (Not the examples it would take to settle: another arm in
    the Holm family rightly raises the number a significant test needs.)"""
    rec = recommendation(*arms)
    settle = None
    if rec.subject is not None and (judged := found(rec, "judgement", arm=rec.subject)):
        settle = judged[0].outcome
    return rec.kind, rec.cause, rec.best, rec.alternative, rec.subject, settle


@FAST
@given(st.data(), st.booleans(), st.booleans(), st.floats(-0.2, 0.2))
def test_a_fine_tuned_arm_identical_to_another_arm_is_never_recommended(data, graded, third, latency_noise):
    # Same scores and tokens as zero_shot on every example, measured faster or slower by noise; a
    # third arm, better or worse, cheaper or dearer, may be the best or the one to use.
    scores = data.draw(arm_scores(2, graded=graded))
    size = len(scores[0])
    prompts = data.draw(prompt_tokens(size))
    measured = MS_PER_TOKEN * prompts.mean() * (1 + latency_noise)
    arms = [build("zero_shot", scores[0], prompts),
            build("lora", scores[0], prompts, fine_tuned=True, latency=measured)]
    if third:
        arms.append(build("rag", scores[1], data.draw(prompt_tokens(size))))
    assert verdict(*arms)[0] != "fine_tune"


@FAST
@given(st.data(), st.booleans(), st.booleans())
def test_adding_an_arm_worse_on_every_example_changes_nothing(data, fine_tuned, two_others):
    # Worse than every arm on every example, and no cheaper than any on any example.
    scores = data.draw(arm_scores(3 if two_others else 2, graded=True))
    size = len(scores[0])
    prompts = [data.draw(prompt_tokens(size)) for _ in scores]
    names = ["zero_shot", "rag", "lora"] if two_others else ["zero_shot", "lora"]
    arms = [build(name, s, p, fine_tuned=name == "lora") for name, s, p in zip(names, scores, prompts)]
    gap = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).uniform(0.01, 0.09, size)
    worse = build("worse", np.min(scores, axis=0) - gap, np.max(prompts, axis=0) + data.draw(st.integers(0, 100)),
                  fine_tuned=fine_tuned)
    assert verdict(*arms, worse) == verdict(*arms)


@FAST
@given(st.data(), st.booleans())
def test_fewer_examples_than_the_minimum_are_never_decided(data, graded):
    few, lora = data.draw(arm_scores(2, graded=graded, n=st.integers(2, MIN_EXAMPLES - 1)))
    prompts = data.draw(prompt_tokens(len(few)))
    kind, cause, *_, settle = verdict(build("few_shot", few, prompts * 3),
                                      build("lora", lora, prompts, fine_tuned=True))
    assert (kind, cause, settle) == ("not_enough_evidence", "examples", "too_few")


@FAST
@given(st.data(), st.permutations(range(3)))
def test_the_order_the_arms_are_listed_in_does_not_matter(data, order):
    scores = data.draw(arm_scores(3, graded=True))
    arms = [build(name, s, data.draw(prompt_tokens(len(s))), fine_tuned=name == "lora")
            for name, s in zip(["zero_shot", "rag", "lora"], scores)]
    assert verdict(*(arms[i] for i in order)) == verdict(*arms)


@st.composite
def degenerate_answers(draw, size: int) -> tuple[str, int, int]:
    """One answer for at least 90% of `size` examples, where fewer of the gold answers are it."""
    share = math.ceil(judge.DEGENERATE_SHARE * size)
    answers = (draw(st.text(max_size=12)), draw(st.integers(share, size)), draw(st.integers(0, share - 1)))
    assume(judge.degenerate(answers[1], answers[2], size))
    return answers


@FAST
@given(st.data(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_adding_a_degenerate_arm_never_changes_the_verdict(data, graded, with_rag, with_lora, fine_tuned):
    """Whatever it scores, whatever it answers, prompting or fine-tuned: a degenerate arm is named and
    changes neither the verdict nor any judgement. Comparisons are built as compare builds them, the
    degenerate arm left out of the paired comparisons. (A report needs a fair arm without fine-tuning
    to hold: beside fine-tuned arms alone, a degenerate prompt turns "no baseline" into "no fair
    baseline", test_decide.py.)"""
    names = ["zero_shot", *(["rag"] if with_rag else []), *(["lora"] if with_lora else [])]
    scores = data.draw(arm_scores(len(names) + 1, graded=graded))
    size = len(scores[0])
    arms = [build(name, s, data.draw(prompt_tokens(size)), fine_tuned=name == "lora")
            for name, s in zip(names, scores)]
    answers = data.draw(degenerate_answers(size))
    stuck = build("stuck", scores[-1], data.draw(prompt_tokens(size)), fine_tuned=fine_tuned, answers=answers)

    def judged(rec):
        return {j.arm: (j.against, j.outcome, j.examples_needed, j.paid_back) for j in found(rec, "judgement")}

    before, after = recommendation(*arms), recommendation(*arms, stuck)
    assert (after.kind, after.cause, after.best, after.alternative, after.subject) == (
        before.kind, before.cause, before.best, before.alternative, before.subject)
    assert judged(after) == judged(before)
    d = one(after, "degenerate")
    assert (d.arm, d.fine_tuned, d.answer, d.count, d.n) == ("stuck", fine_tuned, answers[0], answers[1], size)
    assert not any("stuck" in (p.estimate.a, p.estimate.b) for p in found(after, "pair"))
