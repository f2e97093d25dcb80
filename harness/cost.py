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

if TYPE_CHECKING:
    from harness.task import CostConfig

# Kaplan et al. 2020, as used by Liu et al. 2022 (T-Few): a forward pass through a decoder-only
# Transformer costs about 2 FLOPs per parameter per token processed.
INFERENCE_FLOPS_PER_PARAM_TOKEN = 2


def usd(x: float) -> str:
    """Money for people: cents where they matter, three significant figures for fractions of a cent."""
    if x == 0:
        return "$0"
    if x < 1e-4:
        return "< $0.0001"
    return f"${x:,.2f}" if x >= 100 else f"${x:.3g}"


def inference_flops(n_params: float, tokens: float) -> float:
    return INFERENCE_FLOPS_PER_PARAM_TOKEN * n_params * tokens


def break_even_requests(one_time: float, per_request: float, per_request_other: float) -> float | None:
    """Requests after which one_time + n * per_request equals n * per_request_other (None: never,
    the other is at least as cheap per request)."""
    saving = per_request_other - per_request
    return one_time / saving if saving > 0 else None


def strategy_cost(row: dict, prices: CostConfig, n_params: int, monthly_requests: int) -> dict:
    tokens = row["tokens"]
    if prices.serving == "api":
        per_request = (tokens["prompt_mean"] * prices.api_usd_per_mtok_input
                       + tokens["output_mean"] * prices.api_usd_per_mtok_output) / 1e6
    else:
        per_request = row["latency_ms"]["mean"] / 1000 / 3600 * prices.hardware_usd_per_hour
    training = row.get("training")
    # Training time comes from the adapter's own record: a run that reuses a cached adapter only
    # loads it, but its one-time cost is still the training that made it. Other strategies' one-time
    # work (building a retrieval index) is their preparation time.
    one_time_s = training["wall_s"] if training else row["prepare_s"]
    storage_bytes = training["adapter_bytes"] if training else 0
    return {
        "basis": prices.serving,
        "per_request_usd": per_request,
        "per_request_flops": inference_flops(n_params, tokens["prompt_mean"] + tokens["output_mean"]),
        "one_time_s": one_time_s,
        "one_time_usd": one_time_s / 3600 * prices.hardware_usd_per_hour,
        "one_time_flops": training["flops"] if training else 0.0,
        "storage_bytes": storage_bytes,
        "monthly_requests": monthly_requests,
        "monthly_usd": monthly_requests * per_request + storage_bytes / 1e9 * prices.storage_usd_per_gb_month,
    }


def add_costs(rows: list[dict], prices: CostConfig, n_params: int, monthly_requests: int) -> list[dict]:
    """The rows with a `cost` each; a fine-tuning row (one with `training`) also gets, against every
    other row, the requests and months at the expected volume after which it has paid for itself."""
    costs = {r["name"]: strategy_cost(r, prices, n_params, monthly_requests) for r in rows}
    for r in rows:
        mine = costs[r["name"]]
        mine["break_even"] = {}
        if "training" not in r:
            continue
        for other in rows:
            if "training" in other:
                continue
            n = break_even_requests(mine["one_time_usd"], mine["per_request_usd"],
                                    costs[other["name"]]["per_request_usd"])
            mine["break_even"][other["name"]] = {"requests": n,
                                                 "months": None if n is None else n / monthly_requests}
    return [{**r, "cost": costs[r["name"]]} for r in rows]
