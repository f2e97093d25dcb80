"""Rendering a comparison report for people: the terminal table and verdict, and a Markdown or
self-contained HTML page with plots (quality against cost, learning curves).

The HTML is the Markdown rendered by markdown-it, with the plots embedded as base64 PNGs: one file,
no network, opens anywhere."""

from __future__ import annotations

import base64
import io
import sys
from typing import TYPE_CHECKING

from harness.curves import axis_title, overtake, plotted_curves
from harness.format import num_pct, pts, table_cells, with_ci

if TYPE_CHECKING:
    from harness.results import ComparisonReport, Curve


def _params(n: int | None) -> str:
    return "of unknown size (hosted)" if n is None else f"{n:,} parameters"


def _arm_time(row) -> str:
    """What an arm's run took: preparing it (training, an index), evaluating it and its forgetting probe."""
    wall = row.wall_s if row.wall_s is not None else row.prepare_s + row.n_examples * row.latency_ms.mean / 1000
    return f"{row.name} {wall:.0f} s" + (f" ({row.prepare_s:.0f} preparing)" if row.prepare_s >= 1 else "")


def print_table(report: ComparisonReport, console=None, wide: bool = False) -> None:
    """The strategy table, its default columns (`wide`: every column), then per-arm notes and times."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # Piped output (CI logs, tests) gets a fixed width rather than rich's 80 columns, which
    # would wrap the strategy names.
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    columns, cells = table_cells(report.strategies, report.comparisons.metric, wide=wide)
    # No vertical rules: the default columns fit 120 characters with a space on each side of a cell.
    table = Table(title=f"{report.task} · {report.model} · {report.n_examples} eval examples", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for i, c in enumerate(columns):
        # Each column as wide as its widest cell: rich's own share-out widens some and cuts others.
        width = max([len(c.header)] + [len(line[i]) for line in cells])
        # The arm's name and what it is made of are words, read from the left; the rest are figures.
        table.add_column(c.header, justify="left" if i < 2 else "right", no_wrap=True, width=width,
                         overflow="ellipsis")
    for line in cells:
        table.add_row(*line)
    console.print(table)
    fresh = [r for r in report.strategies if not r.reused]
    if fresh:
        console.print("time: " + ", ".join(_arm_time(r) for r in fresh) + " (wall time in this run)",
                      highlight=False)
    reused = [r.name for r in report.strategies if r.reused]
    if reused:
        console.print("from the store: " + ", ".join(reused), highlight=False)
    for row in report.strategies:
        if row.truncated_inputs:
            console.print(f"{row.name}: {row.truncated_inputs} of {row.n_examples} inputs cut to fit the model's "
                          f"context (prompt.overflow: truncate_input)", highlight=False)
        if row.unmatched_answers:
            console.print(f"{row.name}: {row.unmatched_answers} of {row.n_examples} answers named no label, each "
                          f"scored wrong (classified by generating)", highlight=False)
        if row.forgetting_note:
            console.print(f"{row.name}: forgetting {row.forgetting_note}", highlight=False)


def verdict_text(report: ComparisonReport) -> str:
    """The recommendation as plain lines: the verdict, then one reason per line, then what is missing."""
    rec = report.recommendation
    best = rec.best_strategy
    best = f" (best strategy: {best})" if best and best not in rec.verdict else ""
    lines = [f"verdict: {rec.verdict}{best}"]
    lines += [f"  - {reason}" for reason in rec.reasons]
    lines += [f"  not run: {item}" for item in rec.missing]
    return "\n".join(lines)


# --- plots -----------------------------------------------------------------------------------

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (x, quality) points no other point beats on both x (lower is better: cost, latency) and
    quality (higher), lowest x first."""
    front, best = [], float("-inf")
    for x, quality in sorted(points, key=lambda p: (p[0], -p[1])):
        if quality > best:
            front.append((x, quality))
            best = quality
    return front


def _pareto_plot(report: ComparisonReport) -> bytes:
    # The object-oriented API draws with Agg without touching pyplot's global state or a display.
    from matplotlib.figure import Figure

    metric = report.comparisons.metric
    rows = report.strategies
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    xs = [1000 * r.cost.per_request_usd for r in rows]
    for r, x in zip(rows, xs):
        q = r.metrics[metric]
        ax.errorbar([x], [100 * q.value], yerr=[[100 * (q.value - q.ci_low)], [100 * (q.ci_high - q.value)]],
                    fmt="o", capsize=4, label=r.name)
        ax.annotate(r.name, (x, 100 * q.value), textcoords="offset points", xytext=(6, 6))
    front = pareto_front([(x, 100 * r.value(metric)) for r, x in zip(rows, xs)])
    ax.plot([c for c, _ in front], [q for _, q in front], drawstyle="steps-post", color="grey", linestyle="--",
            marker="o", markersize=14, markerfacecolor="none", label="Pareto front")
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    basis = " and ".join(sorted({r.cost.basis.replace("_", "-") for r in rows}))
    ax.set_xlabel(f"cost per 1,000 requests, USD ({basis})")
    ax.set_ylabel(f"{metric} % (95% CI)")
    ax.set_title(f"{report.task}: quality vs cost")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _png(fig)


def _curves_plot(report: ComparisonReport, curves: list[Curve]) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullLocator

    metric = report.comparisons.metric
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for c in curves:
        points = sorted(c.points, key=lambda p: p.labelled_examples)
        q = [p.metrics[metric] for p in points]
        ax.errorbar([p.labelled_examples for p in points], [100 * m.value for m in q],
                    yerr=[[100 * (m.value - m.ci_low) for m in q], [100 * (m.ci_high - m.value) for m in q]],
                    marker="o", capsize=3, label=c.label())
    for i, r in enumerate(report.strategies, start=len(curves)):
        ax.axhline(100 * r.value(metric), linestyle=":", linewidth=1.2, color=f"C{i}", label=f"{r.name} (compared run)")
    if over := overtake(curves, metric):
        ax.axvline(over.labelled_examples, color="black", linestyle="--", linewidth=1, label=over.label())
    # symlog keeps k=0 (zero labelled examples) on an axis that also spans hundreds of examples.
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(sorted({p.labelled_examples for c in curves for p in c.points}))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(axis_title(curves))
    ax.set_ylabel(f"{metric} % (95% CI)")
    ax.set_title(f"{report.task}: learning curves")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _png(fig)


def figures(report: ComparisonReport) -> dict[str, bytes]:
    """The report's plots as PNG bytes, by name."""
    out = {"pareto": _pareto_plot(report)}
    curves = plotted_curves(report.learning_curves)
    if curves:
        out["learning_curves"] = _curves_plot(report, curves)
    return out


# --- Markdown and HTML -----------------------------------------------------------------------

def _table(header: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    align = ["---"] * right_from + ["---:"] * (len(header) - right_from)
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def render_markdown(report: ComparisonReport, images: dict[str, str]) -> str:
    """The report as Markdown; `images` maps a figure name to its URL (a file beside the Markdown,
    or a data URI). Figures without a URL are left out."""
    rec, comps = report.recommendation, report.comparisons
    metric = comps.metric
    prov = report.provenance
    out = [f"# {report.task} · {report.model} · {report.n_examples} eval examples", "",
           f"Comparison {report.comparison_id}, recorded {prov.recorded_at}, "
           f"git {(prov.git_sha or 'unknown')[:10]}, model {_params(report.model_params)}.", "",
           f"## Verdict: {rec.verdict}", ""]
    if rec.best_strategy:
        out += [f"Best strategy: **{rec.best_strategy}** (decided on {metric}).", ""]
    out += [f"- {reason}" for reason in rec.reasons] + [""]
    if rec.missing:
        out += ["Not run:", ""] + [f"- {item}" for item in rec.missing] + [""]

    out += ["## Strategies", ""]
    columns, cells = table_cells(report.strategies, metric)
    out += _table([c.header for c in columns], cells)
    cost, decision = report.assumptions.cost, report.assumptions.decision
    basis = (f"API prices ${cost.api_usd_per_mtok_input:g} / ${cost.api_usd_per_mtok_output:g} per million "
             f"input / output tokens" if cost.serving == "api"
             else f"self-hosted: measured seconds per example at ${cost.hardware_usd_per_hour:g}/hour")
    hosted = sorted({(r.model, r.usd_per_mtok["input"], r.usd_per_mtok["output"]) for r in report.strategies
                     if r.usd_per_mtok})
    basis += "".join(f"; hosted {m}: its prices ${i:g} / ${o:g} per million input / output tokens"
                     for m, i, o in hosted)
    out += [f"Per-request cost: {basis}. One-time cost: training (or preparation) time at "
            f"${cost.hardware_usd_per_hour:g}/hour. Monthly: {decision.monthly_requests:,} requests plus "
            f"adapter storage at ${cost.storage_usd_per_gb_month:g}/GB-month. FLOPs: 2 x parameters x tokens "
            f"processed (unknown for a hosted model).", ""]

    out += [f"## Paired comparisons ({metric})", "",
            f"Same examples, paired by id; {round(100 * comps.confidence)}% paired bootstrap intervals; "
            f"p-values Holm-corrected over {len(comps.pairs)} comparison(s); 'detectable' is the smallest "
            f"difference found with power {comps.power:g} at alpha {comps.alpha:g} / "
            f"{max(1, len(comps.pairs))}.", ""]
    pairs = [[p.b, p.a, pts(p.diff), f"[{pts(p.ci_low)}, {pts(p.ci_high)}]",
              p.test.replace("_", " "), f"{p.p_value:.3g}", f"{p.p_holm:.3g}",
              "yes" if p.significant else "no", "-" if p.mde is None else f"{100 * p.mde:.1f}"]
             for p in comps.pairs]
    out += _table(["b", "a", "b - a (points)", "CI", "test", "p", "Holm p", "significant", "detectable (points)"],
                  pairs, right_from=2) if pairs else ["Only one strategy: nothing to compare.", ""]

    if "pareto" in images:
        out += ["## Quality vs cost", "", f"![quality vs cost]({images['pareto']})", ""]
    if report.learning_curves:
        out += ["## Learning curves", ""]
        points = [[c.strategy, f"{c.param}={p.value}", "-" if p.labelled_examples is None
                   else str(p.labelled_examples), with_ci(p.metrics[metric])]
                  for c in report.learning_curves for p in c.points]
        out += _table(["strategy", "point", "labelled examples", f"{metric} % [95% CI]"], points, right_from=2)
        if "learning_curves" in images:
            out += [f"![learning curves]({images['learning_curves']})", ""]

    out += ["## Decision settings", "",
            f"Minimum worthwhile gain {num_pct(decision.min_gain)} points; forgetting budget "
            f"{decision.forgetting_budget:g} nats/token; latency SLO "
            f"{'none' if decision.latency_slo_ms is None else str(decision.latency_slo_ms) + ' ms'} (p95); "
            f"{decision.monthly_requests:,} requests/month; payback within {decision.payback_months:g} months; "
            f"alpha {decision.alpha:g}, power {decision.power:g}.", ""]
    return "\n".join(out)


_STYLE = """body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.25rem .5rem}
th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3}"""


def render_html(report: ComparisonReport, pngs: dict[str, bytes]) -> str:
    """One self-contained page: the Markdown report with the plots inlined as data URIs."""
    from html import escape

    from markdown_it import MarkdownIt

    images = {name: "data:image/png;base64," + base64.b64encode(png).decode("ascii") for name, png in pngs.items()}
    # Raw HTML off: task and strategy names are user input and must render as text.
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(render_markdown(report, images))
    title = escape(f"{report.task}: {report.recommendation.verdict}")
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>{_STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")
