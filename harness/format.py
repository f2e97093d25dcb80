"""Numbers for people, and the strategy table's columns: the terminal, the Markdown/HTML report and
the dashboard all render this one spec, so a figure reads the same wherever it is shown."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.results import ArmResult, Interval, PairedDifference


def pct(x: float) -> str:
    """A share as a percentage: 0.3333 -> '33.3%'."""
    return f"{100 * x:.1f}%"


def num_pct(x: float) -> str:
    """A share in percent without the sign, for columns whose header says '%'."""
    return f"{100 * x:.1f}"


def pts(x: float) -> str:
    """A difference of shares in signed percentage points: 0.05 -> '+5.0'."""
    # Rounding first, then adding 0.0, turns -0.0 into +0.0.
    return f"{round(100 * x, 1) + 0.0:+.1f}"


def usd(x: float) -> str:
    """Money: cents where they matter, three significant figures for fractions of a cent. A negative
    amount (a saving that is a loss) keeps its sign."""
    if x < 0:
        magnitude = usd(-x)
        return magnitude.replace("< $", "> -$") if magnitude.startswith("<") else "-" + magnitude
    if x == 0:
        return "$0"
    if x < 1e-4:
        return "< $0.0001"
    return f"${x:,.2f}" if x >= 100 else f"${x:.3g}"


def with_ci(q: Interval) -> str:
    """'33.3 [26.0, 41.3]': a share in percent with its interval."""
    return f"{num_pct(q.value)} [{num_pct(q.ci_low)}, {num_pct(q.ci_high)}]"


def points_with_ci(d: PairedDifference) -> str:
    """'+5.0 [+1.0, +9.0], p=0.012': a paired difference in points, its interval and test."""
    return f"{pts(d.diff)} [{pts(d.ci_low)}, {pts(d.ci_high)}], p={d.p_value:.3g}"


def _or_dash(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


@dataclass(frozen=True)
class Column:
    header: str
    text: Callable[[ArmResult], str]
    help: str = ""
    # Shown only in the wide table (`harness compare --wide`, the Markdown report, the dashboard): the
    # terminal's default keeps what a person reads first on one line per arm at 120 columns.
    wide: bool = False


def strategy_columns(metric: str, lenient: str | None = None, form: tuple[str, ...] = ()) -> list[Column]:
    """The strategy table, one column per figure, in display order; `lenient`: the content metric
    shown beside a strict decision metric; `form`: a structured task's measures of form beside its
    fields."""
    content = [Column(f"{lenient} % [95% CI]", lambda r: with_ci(r.metrics[lenient]),
                      "answers containing the gold answer as whole words: content, whatever the form")
               ] if lenient else []
    content += [Column(f"{m} % [95% CI]", lambda r, m=m: with_ci(r.metrics[m]), "answers that are valid JSON, or "
                       "valid under the schema: form, whatever the content") for m in form]
    return [
        Column("strategy", lambda r: r.name),
        Column("made of", lambda r: (r.made_of or "-") + (" (added)" if r.added_by_harness else ""),
               "the arm's weights, retrieved context and demonstrations; (added): a fair baseline the task file "
               "lacked, added by the harness"),
        Column(f"{metric} % [95% CI]", lambda r: with_ci(r.metrics[metric]),
               "the decision metric with its 95% percentile-bootstrap interval"),
        *content,
        Column("$ / 1k req", lambda r: usd(1000 * r.cost.per_request_usd), "cost of 1,000 requests"),
        Column("p50 ms", lambda r: f"{r.latency_ms.p50:.0f}", "median latency per example", wide=True),
        Column("p95 ms", lambda r: f"{r.latency_ms.p95:.0f}", "95th-percentile latency per example"),
        Column("ex/s", lambda r: _or_dash(r.throughput_eps, ".2f"), "examples per second", wide=True),
        Column("prompt tok", lambda r: f"{r.tokens.prompt_mean:.0f}", "mean prompt tokens per example", wide=True),
        Column("cached tok", lambda r: f"{r.tokens.cached_mean:.0f}",
               "of the prompt tokens, those served from the cache of the arm's shared prefix", wide=True),
        Column("output tok", lambda r: f"{r.tokens.output_mean:.1f}", "mean generated tokens per example",
               wide=True),
        Column("peak MB", lambda r: f"{r.peak_memory_mb:.0f}", "peak memory", wide=True),
        Column("FLOPs / req", lambda r: _or_dash(r.cost.per_request_flops, ".3g"),
               "2 x parameters x tokens computed per request (cached prompt tokens are not)", wide=True),
        Column("one-time $", lambda r: usd(r.cost.one_time_usd), "training or preparation", wide=True),
        Column("$ / month", lambda r: usd(r.cost.monthly_usd), "at the decision's monthly requests", wide=True),
        Column("train s", lambda r: _or_dash(r.training and r.training.wall_s, ".0f"), "training wall time"),
        Column("forget Δloss", lambda r: _or_dash(r.forgetting and r.forgetting.delta_loss, "+.3f"),
               "change of loss on general text against the base model, nats/token"),
    ]


def table_cells(rows: list[ArmResult], metric: str, wide: bool = True) -> tuple[list[Column], list[list[str]]]:
    """The table's columns and cells; `wide` False: the terminal's default columns only."""
    from harness.metrics import LENIENT

    lenient = LENIENT if metric != LENIENT and rows and all(LENIENT in r.metrics for r in rows) else None
    form = tuple(m for m in ("schema_valid", "json_valid")
                 if m != metric and rows and all(m in r.metrics for r in rows))
    columns = [c for c in strategy_columns(metric, lenient, form) if wide or not c.wide]
    return columns, [[c.text(r) for c in columns] for r in rows]
