"""Cost model: what each strategy costs once (training, index building) and per request, in money
and in analytic FLOPs, what that comes to in a month, and after how many requests fine-tuning's
one-time cost is paid back by its cheaper requests.

Money comes from measurements: per-request cost is either the measured compute seconds per
example times the machine's hourly price (self-hosted) or the measured prompt and output tokens
times API prices. So longer prompts (few-shot demonstrations, retrieved passages) cost more per
request either way. Self-hosted cost is marginal: it assumes the machine is busy serving; an idle
always-on server costs its full hourly price whatever the strategy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.measure import inference_flops
from harness.results import BreakEven, Cost

if TYPE_CHECKING:
    from harness.results import ArmResult
    from harness.task import CostConfig


def break_even_requests(one_time: float, per_request: float, per_request_other: float) -> float | None:
    """Requests after which one_time + n * per_request equals n * per_request_other (None: never,
    the other is at least as cheap per request)."""
    saving = per_request_other - per_request
    return one_time / saving if saving > 0 else None


def strategy_cost(row: ArmResult, prices: CostConfig, n_params: int, monthly_requests: int) -> Cost:
    tokens = row.tokens
    if prices.serving == "api":
        per_request = (tokens.prompt_mean * prices.api_usd_per_mtok_input
                       + tokens.output_mean * prices.api_usd_per_mtok_output) / 1e6
    else:
        per_request = row.latency_ms.mean / 1000 / 3600 * prices.hardware_usd_per_hour
    training = row.training
    # Training time comes from the adapter's own record: a run that reuses a cached adapter only
    # loads it, but its one-time cost is still the training that made it. Other strategies' one-time
    # work (building a retrieval index) is their preparation time.
    one_time_s = training.wall_s if training else row.prepare_s
    storage_bytes = training.adapter_bytes if training else 0
    return Cost(
        basis=prices.serving,
        per_request_usd=per_request,
        per_request_flops=inference_flops(n_params, tokens.prompt_mean + tokens.output_mean),
        one_time_s=one_time_s,
        one_time_usd=one_time_s / 3600 * prices.hardware_usd_per_hour,
        one_time_flops=training.flops if training else 0.0,
        storage_bytes=storage_bytes,
        monthly_requests=monthly_requests,
        monthly_usd=monthly_requests * per_request + storage_bytes / 1e9 * prices.storage_usd_per_gb_month,
    )


def add_costs(rows: list[ArmResult], prices: CostConfig, n_params: int, monthly_requests: int) -> list[ArmResult]:
    """The rows with their `cost`; a fine-tuned row's cost also has, against every row that is not
    fine-tuned, the requests and months at the expected volume after which it has paid for itself."""
    costs = {r.name: strategy_cost(r, prices, n_params, monthly_requests) for r in rows}
    for r in rows:
        if not r.fine_tuned:
            continue
        mine = costs[r.name]
        for other in rows:
            if other.fine_tuned:
                continue
            n = break_even_requests(mine.one_time_usd, mine.per_request_usd, costs[other.name].per_request_usd)
            mine.break_even[other.name] = BreakEven(requests=n, months=None if n is None else n / monthly_requests)
    return [r.model_copy(update={"cost": costs[r.name]}) for r in rows]
