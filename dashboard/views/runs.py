"""Everything in the store: every comparison with its verdict, and every strategy run, those still
running and those interrupted (their process died) told apart."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import loaders
from dashboard.views.common import md, when


def _listed(runs: list[dict]) -> str:
    return ", ".join(f"run {r['id']} ({md(r['task'])} {md(r['strategy'])}, {r['examples']} examples so far)"
                     for r in runs)


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
    """sig, the store's signature the other views cache on, is not used: the runs are read again on
    every rerun (a few milliseconds), since a run becomes interrupted when its process dies, which
    changes nothing in the store."""
    st.subheader("Comparisons")
    _comparisons(comparisons)
    st.subheader("Strategy runs")
    runs = loaders.runs(path)
    if not runs:
        st.info("No strategy runs in this store yet.")
        return
    running = [r for r in runs if r["status"] == "running"]
    if running:
        st.info(f"Running: {_listed(running)}.")
    interrupted = [r for r in runs if r["status"] == "interrupted"]
    if interrupted:
        st.warning(f"Interrupted: {_listed(interrupted)}. Run `harness compare TASK.yaml` again to resume.")
    cfg = st.column_config
    st.dataframe(pd.DataFrame([{**r, "created_at": when(r["created_at"]), "finished_at": when(r["finished_at"])}
                               for r in runs]), hide_index=True, column_config={
        "created_at": cfg.DatetimeColumn("started", format="YYYY-MM-DD HH:mm"),
        "finished_at": cfg.DatetimeColumn("finished", format="YYYY-MM-DD HH:mm"),
        "examples": cfg.NumberColumn("examples stored"),
    })
