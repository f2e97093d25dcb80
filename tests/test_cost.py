"""Cost arithmetic against hand-computed cases, including the published ICL-vs-PEFT comparison."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.compare import summarise
from harness.config import CostConfig
from harness.cost import add_costs, break_even_requests, strategy_cost, usd_per_token
from harness.format import usd
from harness.measure import inference_flops, latency_mean_ci
from tests.conftest import arm

SELF_HOSTED = CostConfig(hardware_usd_per_hour=2.0)
API = CostConfig(serving="api", hardware_usd_per_hour=2.0, api_usd_per_mtok_input=0.15, api_usd_per_mtok_output=0.60)


def row(name, *, prompt, output=0.0, latency_mean_ms, prepare_s=0.0, **extra):
    return arm(name, prompt=prompt, output=output, latency_mean_ms=latency_mean_ms, prepare_s=prepare_s, **extra)


def test_t_few_inference_and_training_figures():
    # Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
    # In-Context Learning" (T-Few), section 4.2 and table 1: 41 demonstrations of 98 tokens plus a
    # 103-token input; GPT-3 175B ICL costs 2 x 175e9 x (41 x 98 + 103) = 1.4e15 FLOPs per example.
    icl = inference_flops(175e9, 41 * 98 + 103)
    assert icl == pytest.approx(1.4e15, rel=0.05)
    assert icl == 2 * 175e9 * 4121
    # T-Few runs T0 (11B, encoder-decoder): each token passes through half the parameters, which
    # the paper counts as N FLOPs per token, 11e9 x 103 = 1.1e12 (table 1).
    t_few = inference_flops(11e9 / 2, 103)
    assert t_few == pytest.approx(1.1e12, rel=0.05)
    # "T-Few attains the highest accuracy with 1,000x lower computational cost than ICL with GPT-3 175B."
    assert icl / t_few > 1000
    # Training: 3 x 11e9 x 1,000 steps x 8 sequences x 103 tokens = 2.7e16 FLOPs, "about as much as
    # ICL on 20 examples with GPT-3 175B": the break-even point in FLOPs.
    training = 3 * 11e9 * 1000 * 8 * 103
    assert training == pytest.approx(2.7e16, rel=0.01)
    assert break_even_requests(2.7e16, 1.1e12, 1.4e15) == pytest.approx(20, rel=0.05)  # the stated figures
    assert break_even_requests(training, t_few, icl) == pytest.approx(2.7192e16 / (1.44235e15 - 1.133e12))


def measured(name, prompts, *, latency_mean_ms, **extra):
    """A row and its per-example (prompt, output, cached) tokens, the row's means computed from them."""
    row = arm(name, n=len(prompts), prompt=sum(prompts) / len(prompts), latency_mean_ms=latency_mean_ms, **extra)
    return row, {f"ex-{i}": (p, 0, 0) for i, p in enumerate(prompts)}


def test_per_request_flops_follow_measured_tokens():
    icl = strategy_cost(row("few_shot", prompt=41 * 98 + 103, latency_mean_ms=1.0), SELF_HOSTED, int(175e9), 1, 1e-9)
    assert icl.per_request_flops == pytest.approx(1.44235e15)
    generative = strategy_cost(row("x", prompt=100, output=20, latency_mean_ms=1.0), SELF_HOSTED, 1_000, 1, 1e-9)
    assert generative.per_request_flops == 2 * 1_000 * 120
    assert generative.per_request_tokens == 120


def test_self_hosted_price_per_token_is_the_pooled_measured_throughput():
    zero = arm("zero_shot", n=100, prompt=101, latency_mean_ms=221)
    few = arm("few_shot", n=50, prompt=447, output=2, latency_mean_ms=1274)
    costs = [r.cost for r in add_costs([zero, few], CostConfig(hardware_usd_per_hour=0.10), 134_515_008, 100_000)]
    # Both arms' 100 x 0.221 + 50 x 1.274 = 85.8 s at $0.10/h, over their 100 x 101 + 50 x 449 tokens.
    rate = 0.10 / 3600 * 85.8 / 32_550
    assert usd_per_token([zero, few], 0.10) == pytest.approx(rate)
    for c, tokens in zip(costs, (101, 449)):
        assert c.usd_per_token == pytest.approx(rate) and c.per_request_tokens == tokens
        assert c.per_request_usd == pytest.approx(rate * tokens)
        assert c.monthly_usd == pytest.approx(100_000 * rate * tokens)
        assert c.basis == "self_hosted" and c.one_time_usd == 0 and c.storage_bytes == 0
    # A prompt 4.45 times as long costs 4.45 times as much, whatever its own latency was.
    assert costs[1].per_request_usd / costs[0].per_request_usd == pytest.approx(449 / 101)


def test_equal_tokens_cost_exactly_the_same_whatever_the_latencies():
    # A merged adapter does the base model's FLOPs: one run measuring slower must not make it dearer.
    zero = arm("zero_shot", prompt=101, latency_mean_ms=221)
    lora = arm("lora", prompt=101, latency_mean_ms=260, training={"wall_s": 483.0})
    zero_cost, lora_cost = (r.cost for r in add_costs([zero, lora], SELF_HOSTED, 134_515_008, 100_000))
    assert lora_cost.per_request_usd == zero_cost.per_request_usd
    be = lora_cost.break_even["zero_shot"]
    assert (be.requests, be.months, be.saving_usd) == (None, None, 0.0)


def test_api_cost_is_tokens_times_prices():
    c = strategy_cost(row("few_shot", prompt=447, output=2, latency_mean_ms=1274), API, 134_515_008, 100_000, None)
    # (447 x $0.15 + 2 x $0.60) per million tokens = $6.825e-5 per request, $6.825 a month.
    assert c.per_request_usd == pytest.approx(6.825e-5)
    assert c.monthly_usd == pytest.approx(6.825)
    assert c.usd_per_token is None and c.per_request_tokens == 449


def test_prompt_tokens_served_from_the_prefix_cache_are_priced_as_cached():
    # 4 demonstrations (346 tokens) shared by every request and served from the prefix cache.
    zero = row("zero_shot", prompt=101, latency_mean_ms=221)
    few = row("few_shot", prompt=447, cached=346, latency_mean_ms=240)
    # Self-hosted, a cached token is not computed again: the two arms compute the same tokens, at
    # one rate calibrated on computed tokens only.
    z, f = (r.cost for r in add_costs([zero, few], SELF_HOSTED, 134_515_008, 1000))
    assert f.per_request_flops == z.per_request_flops == inference_flops(134_515_008, 101)
    assert f.per_request_usd == z.per_request_usd == pytest.approx(2.0 / 3600 * (0.221 + 0.240) / 202 * 101)
    # At API prices a cached token costs what providers bill for one (the input price unless set).
    assert strategy_cost(few, API, 134_515_008, 1000, None).per_request_usd == pytest.approx(447 * 0.15e-6)
    cached_price = API.model_copy(update={"api_usd_per_mtok_cached_input": 0.015})
    assert strategy_cost(few, cached_price, 134_515_008, 1000, None).per_request_usd == pytest.approx(
        (101 * 0.15 + 346 * 0.015) / 1e6)


@pytest.mark.parametrize("prices", [SELF_HOSTED, API], ids=["self_hosted", "api"])
def test_longer_prompts_cost_more_per_request(prices):
    zero = row("zero_shot", prompt=101, latency_mean_ms=221)
    few = row("few_shot", prompt=447, latency_mean_ms=1274)
    rag = row("rag", prompt=620, latency_mean_ms=1650, retrieval={"recall_at_k": 0.9})
    costs = {r.name: r.cost for r in add_costs([zero, few, rag], prices, 134_515_008, 1000)}
    for measure in ("per_request_usd", "per_request_flops"):
        zero, few, rag = (getattr(costs[name], measure) for name in ("zero_shot", "few_shot", "rag"))
        assert zero < few < rag


def test_fine_tuning_one_time_cost_storage_and_break_even():
    lora = row("lora", prompt=101, latency_mean_ms=221, prepare_s=3.0,
               training={"wall_s": 1800.0, "flops": 4 * 134_515_008 * 2_000_000, "adapter_bytes": 4_200_000,
                         "train_examples": 1000})
    few = row("few_shot", prompt=447, latency_mean_ms=1274)
    zero = row("zero_shot", prompt=101, latency_mean_ms=221)
    rows = add_costs([zero, few, lora], SELF_HOSTED, 134_515_008, 100_000)
    c = rows[2].cost
    # The training that made the adapter (30 min at $2/h), not this run's 3 s of loading it.
    assert c.one_time_s == 1800 and c.one_time_usd == pytest.approx(1.0)
    assert c.one_time_flops == 4 * 134_515_008 * 2_000_000
    assert c.storage_bytes == 4_200_000
    # 100 examples each of 0.221 + 1.274 + 0.221 s at $2/h, over 100 x (101 + 447 + 101) tokens.
    rate = 2.0 / 3600 * 171.6 / 64_900
    # 4.2 MB at $0.023 per GB-month on top of the requests.
    assert c.monthly_usd == pytest.approx(100_000 * 101 * rate + 0.0042 * 0.023)
    # Against few-shot each request saves 346 prompt tokens: $1 is paid back after 1 / (346 x rate)
    # = 1,967 requests, 0.020 months at 100,000 a month. Hand-built rows have no per-example tokens,
    # so the saving has no interval and its point decides.
    be = c.break_even["few_shot"]
    assert be.saving_usd == pytest.approx(346 * rate)
    assert (be.saving_usd_ci_low, be.saving_usd_ci_high) == (None, None)
    assert be.requests == pytest.approx(1 / (346 * rate))
    assert be.months == pytest.approx(be.requests / 100_000)
    # Against zero-shot, with the same prompt, it never pays back.
    assert (c.break_even["zero_shot"].requests, c.break_even["zero_shot"].months) == (None, None)
    assert rows[0].cost.break_even == {} and rows[0].cost.one_time_flops == 0


# Per-example differences alternating +5 and -4 tokens: a mean of +0.5 that 20 examples cannot tell from 0.
NOISE = [5 if i % 2 else -4 for i in range(20)]


@pytest.mark.parametrize("extra, shown", [(0, False), (346, True)], ids=["saving_within_noise", "clear_saving"])
def test_break_even_only_from_a_saving_whose_interval_is_above_zero(extra, shown):
    prompts = [90 + i for i in range(20)]
    lora, lora_tokens = measured("lora", prompts, latency_mean_ms=221, training={"wall_s": 1800.0})
    other, other_tokens = measured("few_shot", [p + extra + d for p, d in zip(prompts, NOISE)], latency_mean_ms=1274)
    rows = add_costs([other, lora], SELF_HOSTED, 134_515_008, 100_000, {"lora": lora_tokens, "few_shot": other_tokens})
    c = rows[1].cost
    be = c.break_even["few_shot"]
    rate = c.usd_per_token
    assert be.saving_usd == pytest.approx((extra + 0.5) * rate) and be.saving_usd > 0
    assert be.saving_usd_ci_low < be.saving_usd < be.saving_usd_ci_high
    if shown:
        assert be.saving_usd_ci_low > 0
        assert be.requests == pytest.approx(c.one_time_usd / be.saving_usd)
        assert be.months == pytest.approx(be.requests / 100_000)
    else:
        # Half a token's saving is there on average, but not shown: the interval includes zero.
        assert be.saving_usd_ci_low < 0
        assert (be.requests, be.months) == (None, None)


def test_latency_interval_resamples_whole_batches():
    # Two batches of four, at 100 and 300 ms per example: resampling batches, the mean is 100, 200
    # or 300 ms; resampling the eight examples one by one would claim a far narrower interval.
    task = SimpleNamespace(metric_names=["accuracy"], seed=0)  # what summarise reads of a Task
    examples = [{"example_id": f"ex-{i}", "scores": {"accuracy": 1.0}, "latency_ms": 100.0 if i < 4 else 300.0,
                 "prompt_tokens": 10, "output_tokens": 0} for i in range(8)]
    latency = summarise(task, "zero_shot", 1, examples, {}).latency_ms
    assert (latency.mean, latency.mean_ci_low, latency.mean_ci_high) == (200.0, 100.0, 300.0)
    # One batch: nothing to resample.
    assert latency_mean_ci([100.0] * 4, seed=0, confidence=0.95) == (100.0, 100.0)


def test_break_even_edge_cases():
    assert break_even_requests(10.0, 1.0, 1.0) is None
    assert break_even_requests(10.0, 2.0, 1.0) is None
    assert break_even_requests(0.0, 1.0, 2.0) == 0


@pytest.mark.parametrize("x, text", [(0, "$0"), (3e-7, "< $0.0001"), (0.000576, "$0.000576"), (1.5, "$1.5"),
                                     (12.345, "$12.3"), (1234.5, "$1,234.50"),
                                     (-0.000576, "-$0.000576"), (-3e-7, "> -$0.0001")])
def test_money_formatting(x, text):
    assert usd(x) == text
