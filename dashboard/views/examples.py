"""The example explorer: each strategy's answer to every example of a comparison, filtered to those
on which they disagree, and everything stored about one chosen example (prompt, scores, a rag run's
retrieved chunks)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import loaders
from dashboard.views.common import md
from harness.results import ComparisonReport


# Cached on the store's signature, so a write shows on the next rerun.
@st.cache_data(show_spinner="Reading examples...", max_entries=8)
def _example_scores(path: str, sig: tuple, run_ids: dict[str, int], metric: str) -> list[dict]:
    return loaders.example_scores(path, run_ids, metric)


@st.cache_data(show_spinner=False, max_entries=64)
def _example_detail(path: str, sig: tuple, run_ids: dict[str, int], example_id: str) -> list[dict]:
    return loaders.example_detail(path, run_ids, example_id)


def _retrieved(extra: dict) -> None:
    shown = extra.get("n_shown")
    st.dataframe(pd.DataFrame([{**hit, "in_prompt": shown is None or i < shown}
                               for i, hit in enumerate(extra["retrieved"])]),
                 hide_index=True, column_config={"in_prompt": st.column_config.CheckboxColumn("in prompt")})


def _detail(path: str, sig: tuple, run_ids: dict[str, int], chosen: str) -> None:
    detail = _example_detail(path, sig, run_ids, chosen)
    if not detail:  # its runs were redone (--force) since the table was read
        st.info(f"Example {chosen} is no longer in the store; refresh the page.")
        return
    st.markdown(f"**Gold answer:** {md(detail[0]['target'])}")
    for ex, column in zip(detail, st.columns(len(detail))):
        with column:
            st.markdown(f"**{md(ex['strategy'])}**: {md(ex['prediction'])}")
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


def view(path: str, sig: tuple, report: ComparisonReport) -> None:
    metric = report.comparisons.metric
    run_ids = {s.name: s.run_id for s in report.strategies}
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
    _detail(path, sig, run_ids, st.selectbox("Example", list(frame["example"]), key="example_id"))
