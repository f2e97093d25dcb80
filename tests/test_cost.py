"""Cost arithmetic against hand-computed cases, including the published ICL-vs-PEFT comparison."""

from __future__ import annotations

import pytest

from harness.cost import add_costs, break_even_requests, strategy_cost
from harness.format import usd
from harness.measure import inference_flops
from harness.task import CostConfig
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


def test_per_request_flops_follow_measured_tokens():
    icl = strategy_cost(row("few_shot", prompt=41 * 98 + 103, latency_mean_ms=1.0), SELF_HOSTED, int(175e9), 1)
    assert icl.per_request_flops == pytest.approx(1.44235e15)
    generative = strategy_cost(row("x", prompt=100, output=20, latency_mean_ms=1.0), SELF_HOSTED, 1_000, 1)
    assert generative.per_request_flops == 2 * 1_000 * 120


def test_self_hosted_cost_is_measured_seconds_times_hourly_price():
    c = strategy_cost(row("zero_shot", prompt=101, latency_mean_ms=250), CostConfig(hardware_usd_per_hour=0.10),
                      n_params=134_515_008, monthly_requests=100_000)
    # 0.25 s at $0.10 per hour: 0.25 / 3600 * 0.10 = $6.944e-6 per request, $0.694 a month.
    assert c.per_request_usd == pytest.approx(0.25 / 3600 * 0.10)
    assert c.monthly_usd == pytest.approx(0.69444, rel=1e-4)
    assert c.basis == "self_hosted" and c.one_time_usd == 0 and c.storage_bytes == 0


def test_api_cost_is_tokens_times_prices():
    c = strategy_cost(row("few_shot", prompt=447, output=2, latency_mean_ms=1274), API, 134_515_008, 100_000)
    # (447 x $0.15 + 2 x $0.60) per million tokens = $6.825e-5 per request, $6.825 a month.
    assert c.per_request_usd == pytest.approx(6.825e-5)
    assert c.monthly_usd == pytest.approx(6.825)


@pytest.mark.parametrize("prices", [SELF_HOSTED, API], ids=["self_hosted", "api"])
def test_longer_prompts_cost_more_per_request(prices):
    zero = row("zero_shot", prompt=101, latency_mean_ms=221)
    few = row("few_shot", prompt=447, latency_mean_ms=1274)
    rag = row("rag", prompt=620, latency_mean_ms=1650, retrieval={"recall_at_k": 0.9})
    costs = {r.name: r.cost for r in add_costs([zero, few, rag], prices, 134_515_008, 1000)}
    for measure in ("per_request_usd", "per_request_flops"):
        assert getattr(costs["zero_shot"], measure) < getattr(costs["few_shot"], measure) < getattr(costs["rag"], measure)


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
    per_request = 0.221 / 3600 * 2.0
    # 4.2 MB at $0.023 per GB-month on top of the requests.
    assert c.monthly_usd == pytest.approx(100_000 * per_request + 0.0042 * 0.023)
    # Against few-shot each request saves (1.274 - 0.221) s at $2/h: $1 is paid back after
    # 1 / (1.053 / 3600 * 2) = 1709.4 requests, 0.017 months at 100,000 a month.
    be = c.break_even["few_shot"]
    assert be.requests == pytest.approx(3600 / (1.053 * 2))
    assert be.months == pytest.approx(be.requests / 100_000)
    # Against zero-shot, with the same prompt and latency, it never pays back.
    assert (c.break_even["zero_shot"].requests, c.break_even["zero_shot"].months) == (None, None)
    assert rows[0].cost.break_even == {} and rows[0].cost.one_time_flops == 0


def test_break_even_edge_cases():
    assert break_even_requests(10.0, 1.0, 1.0) is None
    assert break_even_requests(10.0, 2.0, 1.0) is None
    assert break_even_requests(0.0, 1.0, 2.0) == 0


@pytest.mark.parametrize("x, text", [(0, "$0"), (3e-7, "< $0.0001"), (0.000576, "$0.000576"), (1.5, "$1.5"),
                                     (12.345, "$12.3"), (1234.5, "$1,234.50")])
def test_money_formatting(x, text):
    assert usd(x) == text
