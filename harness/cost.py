"""Cost model: what each strategy costs once (training, index building) and per request, in money
and in analytic FLOPs, what that comes to in a month, and after how many requests fine-tuning's
one-time cost is paid back by its cheaper requests.

A request's money follows the tokens it processes (prompt plus output). Self-hosted, the arms that
run one model (the base or a merged adapter, with or without demonstrations or retrieved passages)
share its architecture, so a token costs the same in each of them: one price per token and model,
calibrated from the compare's pooled measurements (those arms' measured seconds at the machine's
hourly price, over all the tokens they computed). Pricing each arm's own seconds made two arms of equal FLOPs differ
by whichever run happened to be faster. Prompt and output tokens share that one price; generating
a token costs more than reading one, and no measurement here separates the two. A prompt token
served from the cache of the arm's shared prefix (fixed demonstrations, the system prompt) is not
computed again: self-hosted it costs nothing per request (reading it in attention is inside the
other tokens' measured seconds) and adds no FLOPs, as on a server with prefix caching. API serving
prices tokens at the task's API prices, one set for every arm, a cached prompt token at the cached
price providers bill. An arm on a hosted model is priced at its
own model's prices, whatever the serving assumption, on the tokens its server reported using; its
FLOPs are unknown (the server does not tell its size).

A break-even is claimed only from a shown saving: the paired bootstrap interval of the per-example
cost difference must lie above zero. Self-hosted cost is marginal: it assumes the machine is busy
serving; an idle always-on server costs its full hourly price whatever the strategy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.measure import inference_flops
from harness.results import BreakEven, Cost
from harness.stats import paired_bootstrap_ci
from harness.verdict.judge import degenerate_row

if TYPE_CHECKING:
    from harness.config import CostConfig
    from harness.results import ArmResult

# Per arm, example id -> (prompt tokens, output tokens, of the prompt tokens those served from the
# prefix cache), as stored.
ExampleTokens = dict[str, tuple[float, float, float]]
# (the basis, USD per computed prompt token, per output token, per cached prompt token)
Price = tuple[str, float, float, float]


def break_even_requests(one_time: float, per_request: float, per_request_other: float) -> float | None:
    """Requests after which one_time + n * per_request equals n * per_request_other (None: never,
    the other is at least as cheap per request)."""
    saving = per_request_other - per_request
    return one_time / saving if saving > 0 else None


def usd_per_token(rows: list[ArmResult], usd_per_hour: float) -> float:
    """The self-hosted price of a token: the machine's price of all arms' measured seconds, over all
    the tokens those seconds processed (rows of a hosted model are never among them: their seconds
    are another machine's; prompt tokens served from the prefix cache are not among the tokens)."""
    seconds = sum(r.n_examples * r.latency_ms.mean / 1000 for r in rows)
    tokens = sum(r.n_examples * computed_tokens(r) for r in rows)
    return usd_per_hour / 3600 * seconds / tokens


def computed_tokens(row: ArmResult) -> float:
    """Tokens a request of the row computes: its prompt past the cached prefix, and its output."""
    return row.tokens.prompt_mean - row.tokens.cached_mean + row.tokens.output_mean


def token_prices(row: ArmResult, prices: CostConfig, rate: float | None) -> Price:
    """The prices of a row's requests: its hosted model's, the task's API prices, or `rate` per
    computed token self-hosted (a cached one free)."""
    if row.usd_per_mtok is not None:
        own = row.usd_per_mtok
        return "api", own["input"] / 1e6, own["output"] / 1e6, own.get("cached_input", own["input"]) / 1e6
    if prices.serving == "api":
        cached = prices.api_usd_per_mtok_cached_input
        return ("api", prices.api_usd_per_mtok_input / 1e6, prices.api_usd_per_mtok_output / 1e6,
                (prices.api_usd_per_mtok_input if cached is None else cached) / 1e6)
    return "self_hosted", rate, rate, 0.0


def request_usd(prompt: float, output: float, cached: float, price: Price) -> float:
    """What a request of these tokens (`cached` of its prompt tokens from the cache) costs at `price`."""
    return (prompt - cached) * price[1] + output * price[2] + cached * price[3]


def labelling_usd(row: ArmResult, prices: CostConfig) -> float:
    """What a student's teacher cost to label its inputs: a hosted teacher's requests at its
    prices, a local one's measured seconds at the machine's hourly price."""
    lab = row.labelling
    if lab is None:
        return 0.0
    if lab.usd_per_mtok is None:
        return lab.seconds / 3600 * prices.hardware_usd_per_hour
    own = lab.usd_per_mtok
    price = ("api", own["input"] / 1e6, own["output"] / 1e6, own.get("cached_input", own["input"]) / 1e6)
    return request_usd(lab.prompt_tokens, lab.output_tokens, lab.cached_tokens, price)


def strategy_cost(row: ArmResult, prices: CostConfig, n_params: int | None, monthly_requests: int,
                  rate: float | None) -> Cost:
    """One arm's cost; `rate` is the self-hosted price per token (None for API serving or a hosted
    model); `n_params` None: a model of unknown size, whose FLOPs are unknown."""
    tokens = row.tokens
    price = token_prices(row, prices, rate)
    per_request = request_usd(tokens.prompt_mean, tokens.output_mean, tokens.cached_mean, price)
    training = row.training
    # Training time comes from the adapter's own record: a run that reuses a cached adapter only
    # loads it, but its one-time cost is still the training that made it. Other strategies' one-time
    # work (building a retrieval index) is their preparation time.
    one_time_s = training.wall_s if training else row.prepare_s
    storage_bytes = training.adapter_bytes if training else 0
    labelling = labelling_usd(row, prices)
    return Cost(
        basis=price[0],
        per_request_usd=per_request,
        per_request_tokens=tokens.prompt_mean + tokens.output_mean,
        usd_per_token=rate if price[0] == "self_hosted" else None,
        per_request_flops=None if n_params is None else inference_flops(n_params, computed_tokens(row)),
        one_time_s=one_time_s + (row.labelling.seconds if row.labelling else 0.0),
        one_time_usd=one_time_s / 3600 * prices.hardware_usd_per_hour + labelling,
        labelling_usd=labelling,
        one_time_flops=training.flops if training else 0.0,
        storage_bytes=storage_bytes,
        monthly_requests=monthly_requests,
        monthly_usd=monthly_requests * per_request + storage_bytes / 1e9 * prices.storage_usd_per_gb_month,
    )


def saving_interval(mine: ExampleTokens, other: ExampleTokens, price: Price, other_price: Price,
                    seed: int) -> tuple[float, float]:
    """Paired bootstrap interval of the saving per request, other's cost minus mine, over the
    examples both arms answered."""
    ids = sorted(mine.keys() & other.keys())
    return paired_bootstrap_ci([request_usd(*mine[i], price) for i in ids],
                               [request_usd(*other[i], other_price) for i in ids], seed)


def add_costs(rows: list[ArmResult], prices: CostConfig, n_params: int, monthly_requests: int,
              tokens: dict[str, ExampleTokens] | None = None, seed: int = 0) -> list[ArmResult]:
    """The rows with their `cost`; a fine-tuned row's cost also has, against every row that is not
    fine-tuned, its saving per request and the requests and months at the expected volume after
    which it has paid for itself.

    `tokens` (arm -> example id -> (prompt, output, cached) tokens) gives the saving its paired interval,
    and a break-even needs that interval above zero. Without it (hand-built rows) the saving has no
    interval, and a break-even needs only the saving itself above zero."""
    local = [r for r in rows if r.usd_per_mtok is None]
    # Calibrated on the arms that do the task where there are any: a degenerate arm's timings would
    # otherwise move every arm's price, and adding one must change no verdict (harness/verdict).
    pool = {model: [r for r in local if r.model == model and not degenerate_row(r)]
            or [r for r in local if r.model == model] for model in {r.model for r in local}}
    rates = {} if prices.serving == "api" else {
        model: usd_per_token(arms, prices.hardware_usd_per_hour) for model, arms in pool.items()}
    costs = {r.name: strategy_cost(r, prices, None if r.usd_per_mtok else r.model_params or n_params,
                                   monthly_requests, rates.get(r.model)) for r in rows}
    for r in rows:
        if not r.fine_tuned:
            continue
        mine = costs[r.name]
        for other in rows:
            if other.fine_tuned:
                continue
            theirs = costs[other.name].per_request_usd
            # A token of another model costs another price: each side at its own model's rate.
            low, high = (None, None) if tokens is None else saving_interval(
                tokens[r.name], tokens[other.name], token_prices(r, prices, rates.get(r.model)),
                token_prices(other, prices, rates.get(other.model)), seed)
            shown = low is None or low > 0
            n = break_even_requests(mine.one_time_usd, mine.per_request_usd, theirs) if shown else None
            mine.break_even[other.name] = BreakEven(requests=n, months=None if n is None else n / monthly_requests,
                                                    saving_usd=theirs - mine.per_request_usd,
                                                    saving_usd_ci_low=low, saving_usd_ci_high=high)
    return [r.model_copy(update={"cost": costs[r.name]}) for r in rows]
