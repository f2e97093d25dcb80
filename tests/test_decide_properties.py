"""Properties of the verdict over generated comparisons: rows, costs and paired statistics built as
in test_decide, from per-example scores and tokens that hypothesis draws."""

from __future__ import annotations

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from harness.stats import MIN_EXAMPLES
from tests.test_decide import decide, strategy

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


def build(name: str, scores, prompts, *, fine_tuned: bool = False, latency: float | None = None):
    """An arm as test_decide builds one, and its per-example (prompt, output, cached) tokens."""
    mean = float(np.mean(prompts))
    row = strategy(name, [float(s) for s in scores], prompt=mean, training=fine_tuned,
                   latency=MS_PER_TOKEN * mean if latency is None else latency)
    return row, {f"ex{i}": (float(p), 0.0, 0.0) for i, p in enumerate(prompts)}


def verdict(*arms):
    rec = decide(*(row for row, _ in arms), tokens={row[0].name: tokens for row, tokens in arms})
    # `pytest --hypothesis-show-statistics` shows which verdicts the cases reached.
    event(rec.verdict.split(":")[0])
    return rec.verdict, rec.best_strategy


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
    assert verdict(*arms)[0] != "fine-tune"


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
    text, _ = verdict(build("few_shot", few, prompts * 3), build("lora", lora, prompts, fine_tuned=True))
    assert text.startswith("not enough evidence: ")


@FAST
@given(st.data(), st.permutations(range(3)))
def test_the_order_the_arms_are_listed_in_does_not_matter(data, order):
    scores = data.draw(arm_scores(3, graded=True))
    arms = [build(name, s, data.draw(prompt_tokens(len(s))), fine_tuned=name == "lora")
            for name, s in zip(["zero_shot", "rag", "lora"], scores)]
    assert verdict(*(arms[i] for i in order)) == verdict(*arms)
