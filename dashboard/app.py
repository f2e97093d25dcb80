"""The dashboard page: `harness dashboard [--store PATH]` runs it with Streamlit.

Four views of one store: a comparison (strategy table with intervals, quality against cost and
against latency with the Pareto front, forgetting, training cost, the verdict and a report
download), an example explorer, every run, and the history of gate results. Only the open view is
computed, and reads are cached on the store file's signature, so a store a compare is writing shows
its new rows on the next rerun."""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import datetime

import pandas as pd
import streamlit as st

from dashboard import loaders
from dashboard.loaders import StoreProblem
from harness.report import figures, pareto_front, render_html, render_markdown
from harness.store import DEFAULT_PATH

VIEWS = ["Comparison", "Examples", "Runs", "Gates"]
# Keys a comparison report needs to be shown; reports stored before verdicts existed lack them.
REPORT_KEYS = ("strategies", "comparisons", "recommendation", "assumptions", "learning_curves")


def _store_path() -> str:
    # `harness dashboard` passes --store after Streamlit's `--`; run by hand, the CLI's default applies.
    parser = argparse.ArgumentParser(prog="dashboard/app.py")
    parser.add_argument("--store", default=os.environ.get("HARNESS_STORE", DEFAULT_PATH))
    return os.path.abspath(parser.parse_known_args(sys.argv[1:])[0].store)


def _md(text: object) -> str:
    """Text shown as Markdown verbatim: task names and reasons contain `$`, `_` and brackets, which
    Streamlit would otherwise render as LaTeX, emphasis or links."""
    return re.sub(r"([\\`*_{}\[\]<>()#+\-.!|$~])", r"\\\1", str(text))


def _when(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts)


def _pct(x: float | None) -> float | None:
    return None if x is None else 100 * x


# --- cached reads: keyed on the store's signature, so a write shows on the next rerun -------

@st.cache_data(show_spinner=False, max_entries=8)
def _comparisons(path: str, sig: tuple) -> list[dict]:
    return loaders.comparisons(path)


@st.cache_data(show_spinner=False, max_entries=8)
def _runs(path: str, sig: tuple) -> list[dict]:
    return loaders.runs(path)


@st.cache_data(show_spinner=False, max_entries=8)
def _gates(path: str, sig: tuple) -> list[dict] | None:
    return loaders.gates(path)


@st.cache_data(show_spinner="Reading examples...", max_entries=8)
def _example_scores(path: str, sig: tuple, run_ids: dict[str, int], metric: str) -> list[dict]:
    return loaders.example_scores(path, run_ids, metric)


@st.cache_data(show_spinner=False, max_entries=64)
def _example_detail(path: str, sig: tuple, run_ids: dict[str, int], example_id: str) -> list[dict]:
    return loaders.example_detail(path, run_ids, example_id)


# --- the comparison view -----------------------------------------------------------------------

def _verdict_card(report: dict) -> None:
    rec = report["recommendation"]
    verdict = rec["verdict"]
    alert = st.success if verdict.startswith("fine-tune") else st.info if verdict.startswith("don't") else st.warning
    with st.container(border=True, key="verdict"):
        alert(f"**Verdict: {_md(verdict)}**")
        if rec.get("best_strategy"):
            st.markdown(f"Best strategy: **{_md(rec['best_strategy'])}** "
                        f"(decided on {_md(report['comparisons']['metric'])})")
        st.markdown("\n".join(f"- {_md(reason)}" for reason in rec["reasons"]))
        if rec["missing"]:
            st.caption("Not run: " + "; ".join(_md(m) for m in rec["missing"]))


def _strategy_table(report: dict) -> None:
    metric = report["comparisons"]["metric"]
    rows = []
    for s in report["strategies"]:
        q, c = s["metrics"][metric], s["cost"]
        rows.append({
            "strategy": s["name"], "quality": _pct(q["value"]), "ci_low": _pct(q["ci_low"]),
            "ci_high": _pct(q["ci_high"]), "p50": s["latency_ms"]["p50"], "p95": s["latency_ms"]["p95"],
            "eps": s["throughput_eps"], "prompt_tok": s["tokens"]["prompt_mean"],
            "output_tok": s["tokens"]["output_mean"], "peak_mb": s["peak_memory_mb"],
            "usd_1k": 1000 * c["per_request_usd"], "usd_month": c["monthly_usd"], "one_time_usd": c["one_time_usd"],
            "forget": s["forgetting"]["delta_loss"] if "forgetting" in s else None,
            "reused": bool(s.get("reused")),
        })
    cfg = st.column_config
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "quality": cfg.NumberColumn(f"{metric} %", format="%.1f"),
        "ci_low": cfg.NumberColumn("95% CI low", format="%.1f"),
        "ci_high": cfg.NumberColumn("95% CI high", format="%.1f"),
        "p50": cfg.NumberColumn("p50 ms", format="%.0f"),
        "p95": cfg.NumberColumn("p95 ms", format="%.0f"),
        "eps": cfg.NumberColumn("ex/s", format="%.2f"),
        "prompt_tok": cfg.NumberColumn("prompt tok", format="%.0f"),
        "output_tok": cfg.NumberColumn("output tok", format="%.1f"),
        "peak_mb": cfg.NumberColumn("peak MB", format="%.0f"),
        "usd_1k": cfg.NumberColumn("$ / 1k req", format="%.4g"),
        "usd_month": cfg.NumberColumn("$ / month", format="%.4g",
                                      help=f"{report['assumptions']['decision']['monthly_requests']:,} requests"),
        "one_time_usd": cfg.NumberColumn("one-time $", format="%.4g", help="training or preparation"),
        "forget": cfg.NumberColumn("forget Δloss", format="%+.3f", help="general-text loss change, nats/token"),
        "reused": cfg.CheckboxColumn("from store", help="reused from an earlier run"),
    })
    comps = report["comparisons"]
    if comps["pairs"]:
        st.caption(f"Paired on the same examples: {round(100 * comps['confidence'])}% paired bootstrap intervals, "
                   f"p-values Holm-corrected over {len(comps['pairs'])} comparison(s).")
        st.dataframe(pd.DataFrame([{
            "pair": f"{p['b']} − {p['a']}", "diff": 100 * p["diff"], "ci_low": 100 * p["ci_low"],
            "ci_high": 100 * p["ci_high"], "test": p["test"].replace("_", " "), "p": p["p_value"],
            "p_holm": p["p_holm"], "significant": p["significant"],
            "mde": None if p["mde"] is None else 100 * p["mde"]} for p in comps["pairs"]]),
            hide_index=True, column_config={
                "diff": cfg.NumberColumn("difference (points)", format="%+.1f"),
                "ci_low": cfg.NumberColumn("CI low", format="%+.1f"),
                "ci_high": cfg.NumberColumn("CI high", format="%+.1f"),
                "p": cfg.NumberColumn("p", format="%.3g"),
                "p_holm": cfg.NumberColumn("Holm p", format="%.3g"),
                "significant": cfg.CheckboxColumn("significant"),
                "mde": cfg.NumberColumn("detectable (points)", format="%.1f"),
            })


def _forgetting(report: dict) -> None:
    budget = report["assumptions"]["decision"]["forgetting_budget"]
    rows = [{"strategy": s["name"], "weights_changed": f.get("weights_changed"), "delta_loss": f.get("delta_loss"),
             "over": f.get("delta_loss") is not None and f["delta_loss"] > budget,
             "delta_perplexity": f.get("delta_perplexity"), "delta_qa_f1": _pct(f.get("delta_qa_f1")),
             "base_loss": f.get("base", {}).get("loss"), "adapted_loss": f.get("adapted", {}).get("loss")}
            for s in report["strategies"] if (f := s.get("forgetting"))]
    if not rows:
        st.info("Forgetting was not measured in this comparison.")
        return
    cfg = st.column_config
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "weights_changed": cfg.CheckboxColumn("weights changed"),
        "delta_loss": cfg.NumberColumn("Δ loss (nats/token)", format="%+.3f"),
        "over": cfg.CheckboxColumn(f"over budget ({budget:g})"),
        "delta_perplexity": cfg.NumberColumn("Δ perplexity", format="%+.2f"),
        "delta_qa_f1": cfg.NumberColumn("Δ general QA F1 (points)", format="%+.1f"),
        "base_loss": cfg.NumberColumn("base loss", format="%.3f"),
        "adapted_loss": cfg.NumberColumn("adapted loss", format="%.3f"),
    })


def _training(report: dict) -> None:
    tuned = [s for s in report["strategies"] if "training" in s]
    if not tuned:
        st.info("No fine-tuning strategy in this comparison, so no training cost.")
        return
    rows = []
    for s in tuned:
        t, c = s["training"], s["cost"]
        payback = "; ".join(f"vs {other}: " + ("never" if be.get("requests") is None
                                                 else f"{be['requests']:,.0f} requests ({be['months']:.2g} months)")
                            for other, be in c.get("break_even", {}).items())
        rows.append({"strategy": s["name"], "wall_s": t.get("wall_s"), "steps": t.get("steps"),
                     "train_examples": t.get("train_examples"), "tokens_seen": t.get("tokens_seen"),
                     "tokens_per_s": t.get("tokens_per_s"), "flops": t.get("flops"),
                     "one_time_usd": c["one_time_usd"], "adapter_mb": (t.get("adapter_bytes") or 0) / 1e6,
                     "final_loss": t.get("final_loss"), "best_eval_loss": t.get("best_eval_loss"),
                     "reused_adapter": t.get("reused_adapter"), "payback": payback})
    cfg = st.column_config
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "wall_s": cfg.NumberColumn("train s", format="%.0f"),
        "train_examples": cfg.NumberColumn("train examples"),
        "tokens_seen": cfg.NumberColumn("tokens seen"),
        "tokens_per_s": cfg.NumberColumn("tokens/s", format="%.0f"),
        "flops": cfg.NumberColumn("FLOPs", format="scientific"),
        "one_time_usd": cfg.NumberColumn("one-time $", format="%.4g"),
        "adapter_mb": cfg.NumberColumn("adapter MB", format="%.1f"),
        "final_loss": cfg.NumberColumn("final loss", format="%.3f"),
        "best_eval_loss": cfg.NumberColumn("best eval loss", format="%.3f"),
        "reused_adapter": cfg.CheckboxColumn("reused adapter"),
        "payback": cfg.TextColumn("paid back after"),
    })


def _tradeoff_chart(report: dict, against: str) -> dict:
    """A Vega-Lite spec: each strategy's quality with its interval against its cost or p95 latency,
    and the Pareto front (the strategies nothing beats on both) as a dashed step line. Drawn by the
    browser, so the page's first render draws no image."""
    metric = report["comparisons"]["metric"]
    rows = report["strategies"]
    if against == "cost":
        xs = [1000 * r["cost"]["per_request_usd"] for r in rows]
        title = f"cost per 1,000 requests, USD ({rows[0]['cost']['basis'].replace('_', '-')})"
    else:
        # p95: the percentile the decision's latency SLO is stated in.
        xs = [r["latency_ms"]["p95"] for r in rows]
        title = "p95 latency per request, ms"
    points = [{"strategy": r["name"], "x": x, "quality": 100 * r["metrics"][metric]["value"],
               "ci_low": 100 * r["metrics"][metric]["ci_low"], "ci_high": 100 * r["metrics"][metric]["ci_high"]}
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


def comparison_view(report: dict) -> None:
    _verdict_card(report)
    with st.container(key="strategies"):
        st.subheader("Strategies")
        _strategy_table(report)
    with st.container(key="charts", horizontal=True):
        for against in ("cost", "latency"):
            st.vega_lite_chart(_tradeoff_chart(report, against))
    st.caption("Dots: each strategy's quality with its 95% interval. Dashed line and rings: the Pareto front, "
               "the strategies no other beats on both quality and the x-axis.")
    st.subheader("Forgetting")
    _forgetting(report)
    st.subheader("Training cost")
    _training(report)
    name = f"{report['task']}-comparison-{report['comparison_id']}"
    left, right = st.columns(2)
    # Generated on click: the HTML's plots are matplotlib PNGs, which the page itself does not need.
    left.download_button("Download report (HTML, with plots)", lambda: render_html(report, figures(report)),
                         file_name=f"{name}.html", mime="text/html", on_click="ignore", key="download_html")
    right.download_button("Download report (Markdown)", lambda: render_markdown(report, {}), file_name=f"{name}.md",
                          mime="text/markdown", on_click="ignore", key="download_markdown")


# --- the example explorer ------------------------------------------------------------------------

def _retrieved(extra: dict) -> None:
    shown = extra.get("n_shown")
    st.dataframe(pd.DataFrame([{**hit, "in_prompt": shown is None or i < shown}
                               for i, hit in enumerate(extra["retrieved"])]),
                 hide_index=True, column_config={"in_prompt": st.column_config.CheckboxColumn("in prompt")})


def examples_view(path: str, sig: tuple, report: dict) -> None:
    metric = report["comparisons"]["metric"]
    run_ids = {s["name"]: s["run_id"] for s in report["strategies"]}
    rows = _example_scores(path, sig, run_ids, metric)
    if not rows:
        st.info("This comparison's runs have no examples in the store (were they deleted or forced again?).")
        return
    differ = loaders.disagreeing(rows)
    show = st.radio("Show", ["Strategies disagree", "All examples"], horizontal=True, key="example_filter",
                    help="Disagree: the strategies' predictions or scores differ.")
    table: dict[str, dict] = {}
    for r in rows:
        if show == "All examples" or r["example_id"] in differ:
            row = table.setdefault(r["example_id"], {"example": r["example_id"], "gold": r["target"]})
            row[r["strategy"]] = r["prediction"]
            row[f"{r['strategy']} {metric}"] = r["score"]
    st.caption(f"{len(table)} of {len({r['example_id'] for r in rows})} examples"
               + (" on which the strategies' predictions or scores differ" if show != "All examples" else ""))
    if not table:
        st.info("The strategies agree on every example." if len(run_ids) > 1
                else "Only one strategy in this comparison: nothing to disagree on.")
        return
    frame = pd.DataFrame(sorted(table.values(), key=lambda r: r["example"]))
    st.dataframe(frame, hide_index=True,
                 column_config={f"{name} {metric}": st.column_config.NumberColumn(format="%.3g") for name in run_ids})
    chosen = st.selectbox("Example", list(frame["example"]), key="example_id")
    detail = _example_detail(path, sig, run_ids, chosen)
    if not detail:  # its runs were redone (--force) since the table was read
        st.info(f"Example {chosen} is no longer in the store; refresh the page.")
        return
    st.markdown(f"**Gold answer:** {_md(detail[0]['target'])}")
    for ex, column in zip(detail, st.columns(len(detail))):
        with column:
            st.markdown(f"**{_md(ex['strategy'])}**: {_md(ex['prediction'])}")
            st.caption(", ".join(f"{k} {v:.3g}" for k, v in ex["scores"].items())
                       + f" · {ex['prompt_tokens']} prompt tokens · {ex['latency_ms']:.0f} ms")
            st.code(ex["prompt"], language=None, wrap_lines=True, height=320)
            extra = dict(ex["extra"])
            if "retrieved" in extra:
                st.markdown("Retrieved chunks, best first:")
                _retrieved(extra)
                extra.pop("retrieved")
                extra.pop("n_shown", None)
            if extra:
                st.json(extra, expanded=False)


# --- runs and gates ----------------------------------------------------------------------------------

def runs_view(path: str, sig: tuple, comparisons: list[dict]) -> None:
    st.subheader("Comparisons")
    cfg = st.column_config
    if comparisons:
        st.dataframe(pd.DataFrame([{
            "id": c["id"], "date": _when(c["created_at"]), "task": c["task"], "model": c["report"].get("model"),
            "examples": c["report"].get("n_examples"),
            "strategies": ", ".join(s["name"] for s in c["report"].get("strategies", [])),
            "verdict": c["report"].get("recommendation", {}).get("verdict", "(stored before verdicts)"),
        } for c in comparisons]), hide_index=True,
            column_config={"date": cfg.DatetimeColumn(format="YYYY-MM-DD HH:mm")})
    else:
        st.info("No comparison stored yet.")
    st.subheader("Strategy runs")
    runs = _runs(path, sig)
    if not runs:
        st.info("No strategy runs in this store yet.")
        return
    running = [r for r in runs if r["status"] == "running"]
    if running:
        st.warning("Still running or interrupted: " + ", ".join(
            f"run {r['id']} ({_md(r['task'])} {_md(r['strategy'])}, {r['examples']} examples so far)" for r in running))
    st.dataframe(pd.DataFrame([{**r, "created_at": _when(r["created_at"]), "finished_at": _when(r["finished_at"])}
                               for r in runs]), hide_index=True, column_config={
        "created_at": cfg.DatetimeColumn("started", format="YYYY-MM-DD HH:mm"),
        "finished_at": cfg.DatetimeColumn("finished", format="YYYY-MM-DD HH:mm"),
        "examples": cfg.NumberColumn("examples stored"),
    })


def _quality_text(q: dict | None) -> str | None:
    if not q or q.get("value") is None:
        return None
    ci = f" [{100 * q['ci_low']:.1f}, {100 * q['ci_high']:.1f}]" if q.get("ci_low") is not None else ""
    return f"{100 * q['value']:.1f}{ci}"


def _difference_text(d: dict | None) -> str | None:
    if not d or d.get("diff") is None:
        return None
    ci = f" [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]" if d.get("ci_low") is not None else ""
    p = f", p={d['p_value']:.3g}" if d.get("p_value") is not None else ""
    return f"{100 * d['diff']:+.1f}{ci}{p}"


def gates_view(path: str, sig: tuple) -> None:
    gates = _gates(path, sig)
    if gates is None:
        st.info("No gate results: this store was created before gate results existed.")
        return
    if not gates:
        st.info("No gate results yet: `harness gate` records one each time it checks a checkpoint.")
        return
    rows = []
    for g in gates:
        result = g["result"] if isinstance(g["result"], dict) else {}
        cand, base = result.get("candidate") or {}, result.get("baseline") or {}
        rules = result.get("rules") or []
        rows.append({"id": g["id"], "date": _when(g["created_at"]), "task": g["task"], "checkpoint": g["checkpoint"],
                     "passed": g["passed"], "metric": result.get("metric"), "candidate": _quality_text(cand.get("quality")),
                     "baseline": base.get("label") or base.get("kind"), "baseline_quality": _quality_text(base.get("quality")),
                     "difference": _difference_text(result.get("difference")),
                     "failed": ", ".join(r.get("name", "?") for r in rules if r.get("outcome") == "fail"),
                     "candidate_run": g["candidate_run_id"], "baseline_run": g["baseline_run_id"]})
    passed = sum(g["passed"] for g in gates)
    st.caption(f"{len(gates)} gate results, newest first: {passed} passed, {len(gates) - passed} failed.")
    cfg = st.column_config
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "date": cfg.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "passed": cfg.CheckboxColumn("passed"),
        "candidate": cfg.TextColumn("candidate % [95% CI]"),
        "baseline_quality": cfg.TextColumn("baseline % [95% CI]"),
        "difference": cfg.TextColumn("candidate − baseline (points)"),
        "failed": cfg.TextColumn("failed rules"),
    })
    by_id = {g["id"]: g for g in gates}
    chosen = st.selectbox("Rules of gate", list(by_id), key="gate_id",
                          format_func=lambda i: f"{i} · {by_id[i]['task']} · {by_id[i]['checkpoint']} · "
                                                f"{'passed' if by_id[i]['passed'] else 'failed'}")
    result = by_id[chosen]["result"] if isinstance(by_id[chosen]["result"], dict) else {}
    rules = result.get("rules") or []
    if not rules:
        st.info(f"Gate {chosen} recorded no rules.")
        return
    # Thresholds and observations are numbers, names or nothing, depending on the rule.
    st.dataframe(pd.DataFrame([{k: "" if r.get(k) is None else str(r[k])
                                for k in ("name", "outcome", "threshold", "observed", "message")} for r in rules]),
                 hide_index=True)


# --- the page --------------------------------------------------------------------------------------

def _pick_comparison(comparisons: list[dict]) -> dict:
    """The sidebar's task and comparison; by default the newest comparison's task, newest first."""
    tasks = list(dict.fromkeys(c["task"] for c in comparisons))
    task = st.sidebar.selectbox("Task", tasks, key="task")
    mine = [c for c in comparisons if c["task"] == task]
    by_id = {c["id"]: c for c in mine}
    chosen = st.sidebar.selectbox(
        "Comparison", list(by_id), key="comparison_id",
        format_func=lambda i: f"#{i} · {_when(by_id[i]['created_at']):%Y-%m-%d %H:%M} · "
                              f"{by_id[i]['report'].get('recommendation', {}).get('verdict', 'no verdict')}")
    return by_id[chosen]


def main() -> None:
    st.set_page_config(page_title="ft-harness", layout="wide")
    path = _store_path()
    st.sidebar.title("ft-harness")
    st.sidebar.caption(f"Store: {path}")
    # A rerun re-reads whatever a running compare has committed since.
    st.sidebar.button("Refresh", key="refresh")
    sig = loaders.signature(path)
    try:
        comparisons = _comparisons(path, sig)
    except StoreProblem as e:
        st.error(str(e))
        return
    chosen = _pick_comparison(comparisons) if comparisons else None
    if chosen is None:
        st.info("No comparison in this store yet. `harness compare TASK.yaml` stores one when it finishes; "
                "runs in progress are listed under Runs.")
        report = None
    else:
        report = chosen["report"]
        st.header(f"{report['task']} · {report.get('model', '?')} · {report.get('n_examples', '?')} eval examples")
        st.caption(f"Comparison {chosen['id']}, recorded {_when(chosen['created_at']):%Y-%m-%d %H:%M}")
        lacking = [k for k in REPORT_KEYS if k not in report]
        if lacking:
            st.warning(f"Comparison {chosen['id']} was stored by an older harness, without "
                       f"{', '.join(lacking)}; run `harness compare` on its task again to see it here.")
            report = None
    tabs = dict(zip(VIEWS, st.tabs(VIEWS, key="view", on_change="rerun")))
    try:
        with tabs["Comparison"]:
            if tabs["Comparison"].open and report is not None:
                comparison_view(report)
        with tabs["Examples"]:
            if tabs["Examples"].open and report is not None:
                examples_view(path, sig, report)
        with tabs["Runs"]:
            if tabs["Runs"].open:
                runs_view(path, sig, comparisons)
        with tabs["Gates"]:
            if tabs["Gates"].open:
                gates_view(path, sig)
    except StoreProblem as e:  # the store went away or broke between two reads
        st.error(str(e))


main()
