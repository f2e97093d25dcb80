"""One comparison: the verdict, the strategy table (the column spec every renderer shares) and the
paired differences, quality against cost and against latency with the Pareto front, learning curves
with where fine-tuning overtakes in-context learning, forgetting, training cost, and the report as a
download."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.views.common import md
from harness.curves import Overtake, axis_title, overtake, overtake_finding, plotted_curves
from harness.format import table_cells, usd
from harness.report import figures, pareto_front, render_html, render_markdown
from harness.results import ComparisonReport, Curve, CurvePoint
from harness.verdict.text import overtake_sentence


def _verdict_card(report: ComparisonReport) -> None:
    rec = report.recommendation
    verdict = rec.verdict
    alert = {"fine_tune": st.success, "dont_fine_tune": st.info}.get(rec.kind, st.warning)
    with st.container(border=True, key="verdict"):
        alert(f"**Verdict: {md(verdict)}**")
        if rec.best_strategy:
            st.markdown(f"Best strategy: **{md(rec.best_strategy)}** (decided on {md(report.comparisons.metric)})")
        st.markdown("\n".join(f"- {md(reason)}" for reason in rec.reasons))
        if rec.missing:
            st.caption("Not run: " + "; ".join(md(m) for m in rec.missing))


def _strategy_table(report: ComparisonReport) -> None:
    columns, cells = table_cells(report.strategies, report.comparisons.metric)
    frame = pd.DataFrame(cells, columns=[c.header for c in columns])
    frame["from store"] = [r.reused for r in report.strategies]
    cfg = st.column_config
    st.dataframe(frame, hide_index=True, column_config={
        **{c.header: cfg.TextColumn(help=c.help or None) for c in columns},
        "from store": cfg.CheckboxColumn(help="reused from an earlier run"),
    })


def _pairs(report: ComparisonReport) -> None:
    comps = report.comparisons
    if not comps.pairs:
        return
    st.caption(f"Paired on the same examples: {round(100 * comps.confidence)}% paired bootstrap intervals, "
               f"p-values Holm-corrected over {len(comps.pairs)} comparison(s).")
    cfg = st.column_config
    st.dataframe(pd.DataFrame([{
        "pair": f"{p.b} − {p.a}", "diff": 100 * p.diff, "ci_low": 100 * p.ci_low, "ci_high": 100 * p.ci_high,
        "test": p.test.replace("_", " "), "p": p.p_value, "p_holm": p.p_holm, "significant": p.significant,
        "mde": None if p.mde is None else 100 * p.mde} for p in comps.pairs]),
        hide_index=True, column_config={
            "diff": cfg.NumberColumn("difference (points)", format="%+.1f"),
            "ci_low": cfg.NumberColumn("CI low", format="%+.1f"),
            "ci_high": cfg.NumberColumn("CI high", format="%+.1f"),
            "p": cfg.NumberColumn("p", format="%.3g"),
            "p_holm": cfg.NumberColumn("Holm p", format="%.3g"),
            "significant": cfg.CheckboxColumn("significant"),
            "mde": cfg.NumberColumn("detectable (points)", format="%.1f"),
        })


def _forgetting(report: ComparisonReport) -> None:
    budget = report.assumptions.decision.forgetting_budget
    rows = [{"strategy": s.name, "weights_changed": f.weights_changed, "delta_loss": f.delta_loss,
             "loss_ci_low": f.delta_loss_ci_low, "loss_ci_high": f.delta_loss_ci_high,
             "over": f.delta_loss_ci_high > budget, "delta_perplexity": f.delta_perplexity,
             "delta_qa_contains": 100 * f.delta_qa_contains, "qa_ci_low": 100 * f.delta_qa_contains_ci_low,
             "qa_ci_high": 100 * f.delta_qa_contains_ci_high, "base_loss": f.base.loss, "adapted_loss": f.adapted.loss}
            for s in report.strategies if (f := s.forgetting)]
    if not rows:
        st.info("Forgetting was not measured in this comparison.")
        return
    st.caption("Adapted minus base on the forgetting probe, with 95% paired bootstrap intervals (over probe "
               "passages for the loss, over questions for the share of general questions answered).")
    cfg = st.column_config
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "weights_changed": cfg.CheckboxColumn("weights changed"),
        "delta_loss": cfg.NumberColumn("Δ loss (nats/token)", format="%+.3f"),
        "loss_ci_low": cfg.NumberColumn("CI low", format="%+.3f"),
        "loss_ci_high": cfg.NumberColumn("CI high", format="%+.3f"),
        "over": cfg.CheckboxColumn(f"over budget ({budget:g})",
                                   help="the Δ loss interval's upper bound is above the budget"),
        "delta_perplexity": cfg.NumberColumn("Δ perplexity", format="%+.2f"),
        "delta_qa_contains": cfg.NumberColumn("Δ general questions answered (points)", format="%+.1f",
                                              help="share of general questions whose answer contains the gold "
                                                   "answer, in any form; negative: the model answers fewer"),
        "qa_ci_low": cfg.NumberColumn("CI low", format="%+.1f"),
        "qa_ci_high": cfg.NumberColumn("CI high", format="%+.1f"),
        "base_loss": cfg.NumberColumn("base loss", format="%.3f"),
        "adapted_loss": cfg.NumberColumn("adapted loss", format="%.3f"),
    })


def _training(report: ComparisonReport) -> None:
    tuned = [s for s in report.strategies if s.fine_tuned]
    if not tuned:
        st.info("No fine-tuning strategy in this comparison, so no training cost.")
        return
    rows = []
    for s in tuned:
        t, c = s.training, s.cost
        payback = "; ".join(f"vs {other}: " + ("never" if be.requests is None
                                                 else f"{be.requests:,.0f} requests ({be.months:.2g} months)")
                            for other, be in c.break_even.items())
        # A checkpoint trained outside the harness comes without a record of its training.
        rows.append({"strategy": s.name, "wall_s": t and t.wall_s, "steps": t and t.steps,
                     "train_examples": t and t.train_examples, "tokens_seen": t and t.tokens_seen,
                     "tokens_per_s": t and t.tokens_per_s, "flops": t and t.flops, "one_time": usd(c.one_time_usd),
                     "adapter_mb": t and t.adapter_bytes / 1e6, "final_loss": t and t.final_loss,
                     "best_eval_loss": t and t.best_eval_loss, "reused_adapter": t and t.reused_adapter,
                     "payback": payback})
    cfg = st.column_config
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "wall_s": cfg.NumberColumn("train s", format="%.0f"),
        "train_examples": cfg.NumberColumn("train examples"),
        "tokens_seen": cfg.NumberColumn("tokens seen"),
        "tokens_per_s": cfg.NumberColumn("tokens/s", format="%.0f"),
        "flops": cfg.NumberColumn("FLOPs", format="scientific"),
        "one_time": cfg.TextColumn("one-time $", help="training or preparation"),
        "adapter_mb": cfg.NumberColumn("adapter MB", format="%.1f"),
        "final_loss": cfg.NumberColumn("final loss", format="%.3f"),
        "best_eval_loss": cfg.NumberColumn("best eval loss", format="%.3f"),
        "reused_adapter": cfg.CheckboxColumn("reused adapter"),
        "payback": cfg.TextColumn("paid back after"),
    })


def _tradeoff_chart(report: ComparisonReport, against: str) -> dict:
    """A Vega-Lite spec: each strategy's quality with its interval against its cost or p95 latency,
    and the Pareto front (the strategies nothing beats on both) as a dashed step line. Drawn by the
    browser, so the page's first render draws no image."""
    metric = report.comparisons.metric
    rows = report.strategies
    if against == "cost":
        xs = [1000 * r.cost.per_request_usd for r in rows]
        basis = " and ".join(sorted({r.cost.basis.replace("_", "-") for r in rows}))
        title = f"cost per 1,000 requests, USD ({basis})"
    else:
        # p95: the percentile the decision's latency SLO is stated in.
        xs = [r.latency_ms.p95 for r in rows]
        title = "p95 latency per request, ms"
    points = [{"strategy": r.name, "x": x, "quality": 100 * r.metrics[metric].value,
               "ci_low": 100 * r.metrics[metric].ci_low, "ci_high": 100 * r.metrics[metric].ci_high}
              for r, x in zip(rows, xs)]
    front = [{"x": x, "quality": q} for x, q in pareto_front([(p["x"], p["quality"]) for p in points])]
    # As in the report's plot: a log axis once the strategies are more than 20x apart.
    log = min(xs) > 0 and max(xs) / min(xs) > 20
    x = {"field": "x", "type": "quantitative", "title": title, "scale": {"type": "log"} if log else {"zero": False}}
    # The axis spans the intervals, not just the points (Vega-Lite sizes it from `y` alone).
    domain = [max(0, min(p["ci_low"] for p in points) - 5), min(100, max(p["ci_high"] for p in points) + 5)]
    y = {"field": "quality", "type": "quantitative", "title": f"{metric} % (95% CI)", "scale": {"domain": domain}}
    color = {"field": "strategy", "type": "nominal", "legend": None}
    return {
        "title": f"quality vs {against}",
        "height": 320,
        "layer": [
            {"data": {"values": front}, "mark": {"type": "line", "interpolate": "step-after", "strokeDash": [6, 4],
                                                 "color": "grey", "point": {"filled": False, "size": 350,
                                                                            "color": "grey"}},
             "encoding": {"x": x, "y": y}, "name": "pareto_front"},
            {"data": {"values": points}, "layer": [
                {"mark": "rule", "encoding": {"x": x, "y": {**y, "field": "ci_low"}, "y2": {"field": "ci_high"},
                                              "color": color}},
                {"mark": {"type": "point", "filled": True, "size": 90},
                 "encoding": {"x": x, "y": y, "color": color, "tooltip": [
                     {"field": "strategy"}, {"field": "quality", "format": ".1f", "title": f"{metric} %"},
                     {"field": "ci_low", "format": ".1f", "title": "CI low"},
                     {"field": "ci_high", "format": ".1f", "title": "CI high"},
                     {"field": "x", "format": ".4g", "title": title}]}},
                {"mark": {"type": "text", "align": "left", "dx": 8, "dy": -8},
                 "encoding": {"x": x, "y": y, "text": {"field": "strategy"}, "color": color}},
            ]},
        ],
    }


def _curve_point(curve: Curve, point: CurvePoint, metric: str) -> dict:
    q = point.metrics[metric]
    return {"line": curve.label(), "point": f"{curve.param}={point.value}",
            "labelled_examples": point.labelled_examples, "quality": 100 * q.value, "ci_low": 100 * q.ci_low,
            "ci_high": 100 * q.ci_high}


def _curves_chart(report: ComparisonReport, curves: list[Curve], over: Overtake | None) -> dict:
    """A Vega-Lite spec of the report's learning-curve plot: quality with its interval against
    labelled train examples, one line per curve, the compared runs as dotted horizontal rules, and
    a dashed rule where fine-tuning overtakes in-context learning."""
    metric = report.comparisons.metric
    points = [_curve_point(c, p, metric) for c in curves for p in c.points]
    runs = [{"line": f"{r.name} (compared run)", "quality": 100 * r.value(metric)} for r in report.strategies]
    # symlog, as in the report's plot: k=0 stays on an axis that also spans thousands of examples.
    x = {"field": "labelled_examples", "type": "quantitative", "title": axis_title(curves),
         "scale": {"type": "symlog", "constant": 1},
         "axis": {"values": sorted({p["labelled_examples"] for p in points}), "format": ",d"}}
    # The axis spans the intervals and the compared runs, not just the points.
    qualities = [r["quality"] for r in runs]
    domain = [max(0, min([p["ci_low"] for p in points] + qualities) - 5),
              min(100, max([p["ci_high"] for p in points] + qualities) + 5)]
    y = {"field": "quality", "type": "quantitative", "title": f"{metric} % (95% CI)", "scale": {"domain": domain}}
    # Below the plot, in full: curve names carry dotted parameter paths.
    color = {"field": "line", "type": "nominal", "title": None,
             "legend": {"orient": "bottom", "columns": 3, "labelLimit": 400}}
    tooltip = [{"field": "line", "title": "curve"}, {"field": "point"},
               {"field": "labelled_examples", "title": "labelled examples"},
               {"field": "quality", "format": ".1f", "title": f"{metric} %"},
               {"field": "ci_low", "format": ".1f", "title": "CI low"},
               {"field": "ci_high", "format": ".1f", "title": "CI high"}]
    layers = [
        {"data": {"values": runs}, "mark": {"type": "rule", "strokeDash": [2, 3]}, "name": "compared_runs",
         "encoding": {"y": y, "color": color, "tooltip": [{"field": "line", "title": "run"},
                                                          {"field": "quality", "format": ".1f",
                                                           "title": f"{metric} %"}]}},
        {"data": {"values": points}, "name": "curves", "layer": [
            {"mark": "rule", "encoding": {"x": x, "y": {**y, "field": "ci_low"}, "y2": {"field": "ci_high"},
                                          "color": color}},
            {"mark": {"type": "line", "point": {"filled": True, "size": 60}},
             "encoding": {"x": x, "y": y, "color": color, "tooltip": tooltip}},
        ]},
    ]
    if over:
        layers.append({"data": {"values": [{"labelled_examples": over.labelled_examples, "label": over.label()}]},
                       "name": "overtake", "layer": [
                           {"mark": {"type": "rule", "strokeDash": [6, 4], "color": "black"}, "encoding": {"x": x}},
                           {"mark": {"type": "text", "align": "right", "baseline": "top", "dx": -4, "y": 4},
                            "encoding": {"x": x, "text": {"field": "label"}}},
                       ]})
    return {"title": "quality vs labelled train examples", "height": 360, "layer": layers}


def _learning_curves(report: ComparisonReport) -> None:
    metric = report.comparisons.metric
    curves = plotted_curves(report.learning_curves)
    if curves:
        st.vega_lite_chart(_curves_chart(report, curves, overtake(curves, metric)))
        st.caption("Lines: quality with its 95% interval against the labelled train examples each point learned "
                   "from (demonstrations in the prompt, or the fine-tuning set). Dotted: the compared runs.")
        st.markdown(md(overtake_sentence(overtake_finding(curves, metric))))
    unplotted = [c for c in report.learning_curves if c not in curves]
    if unplotted:
        st.caption("Curves over a parameter that does not set the number of labelled examples:")
        cfg = st.column_config
        st.dataframe(pd.DataFrame([_curve_point(c, p, metric) for c in unplotted for p in c.points]),
                     hide_index=True, column_config={
                         "line": cfg.TextColumn("curve"),
                         "labelled_examples": cfg.NumberColumn("labelled examples"),
                         "quality": cfg.NumberColumn(f"{metric} %", format="%.1f"),
                         "ci_low": cfg.NumberColumn("CI low", format="%.1f"),
                         "ci_high": cfg.NumberColumn("CI high", format="%.1f"),
                     })


def view(report: ComparisonReport) -> None:
    _verdict_card(report)
    with st.container(key="strategies"):
        st.subheader("Strategies")
        _strategy_table(report)
        _pairs(report)
    with st.container(key="charts", horizontal=True):
        for against in ("cost", "latency"):
            st.vega_lite_chart(_tradeoff_chart(report, against))
    st.caption("Dots: each strategy's quality with its 95% interval. Dashed line and rings: the Pareto front, "
               "the strategies no other beats on both quality and the x-axis.")
    if report.learning_curves:
        st.subheader("Learning curves")
        _learning_curves(report)
    st.subheader("Forgetting")
    _forgetting(report)
    st.subheader("Training cost")
    _training(report)
    name = f"{report.task}-comparison-{report.comparison_id}"
    left, right = st.columns(2)
    # Generated on click: the HTML's plots are matplotlib PNGs, which the page itself does not need.
    left.download_button("Download report (HTML, with plots)", lambda: render_html(report, figures(report)),
                         file_name=f"{name}.html", mime="text/html", on_click="ignore", key="download_html")
    right.download_button("Download report (Markdown)", lambda: render_markdown(report, {}), file_name=f"{name}.md",
                          mime="text/markdown", on_click="ignore", key="download_markdown")
