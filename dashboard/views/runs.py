"""Everything in the store: every comparison with its verdict, and every strategy run, including
those still running or interrupted."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import loaders
from dashboard.views.common import md, when


# Cached on the store's signature, so a write shows on the next rerun.
@st.cache_data(show_spinner=False, max_entries=8)
def _runs(path: str, sig: tuple) -> list[dict]:
    return loaders.runs(path)


def _comparisons(comparisons: list[dict]) -> None:
    if not comparisons:
        st.info("No comparison stored yet.")
        return
    rows = []
    for c in comparisons:
        r = c["report"]  # None: stored by an older harness, so only the store's own columns are known
        rows.append({"id": c["id"], "date": when(c["created_at"]), "task": c["task"], "model": r and r.model,
                     "examples": r and r.n_examples, "strategies": r and ", ".join(s.name for s in r.strategies),
                     "verdict": r.recommendation.verdict if r else "(stored before verdicts)"})
    st.dataframe(pd.DataFrame(rows), hide_index=True,
                 column_config={"date": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")})


def view(path: str, sig: tuple, comparisons: list[dict]) -> None:
    st.subheader("Comparisons")
    _comparisons(comparisons)
    st.subheader("Strategy runs")
    runs = _runs(path, sig)
    if not runs:
        st.info("No strategy runs in this store yet.")
        return
    running = [r for r in runs if r["status"] == "running"]
    if running:
        st.warning("Still running or interrupted: " + ", ".join(
            f"run {r['id']} ({md(r['task'])} {md(r['strategy'])}, {r['examples']} examples so far)" for r in running))
    cfg = st.column_config
    st.dataframe(pd.DataFrame([{**r, "created_at": when(r["created_at"]), "finished_at": when(r["finished_at"])}
                               for r in runs]), hide_index=True, column_config={
        "created_at": cfg.DatetimeColumn("started", format="YYYY-MM-DD HH:mm"),
        "finished_at": cfg.DatetimeColumn("finished", format="YYYY-MM-DD HH:mm"),
        "examples": cfg.NumberColumn("examples stored"),
    })
