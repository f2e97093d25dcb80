"""The history of `harness gate`: every checked checkpoint, newest first, with its outcome and its
quality against the baseline's, and the rules of a chosen gate with the numbers that decided them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import loaders
from dashboard.views.common import when
from harness.format import points_with_ci, with_ci
from harness.gate import ICON, WORD


# Cached on the store's signature, so a write shows on the next rerun.
@st.cache_data(show_spinner=False, max_entries=8)
def _gates(path: str, sig: tuple) -> list[dict] | None:
    return loaders.gates(path)


def _outcome(g: dict) -> str:
    # A result stored before gates could be inconclusive, or in a shape this harness cannot read,
    # has only the store's own pass/fail column.
    return g["result"].outcome if g["result"] is not None else "pass" if g["passed"] else "fail"


def _badge(g: dict) -> str:
    outcome = _outcome(g)
    return f"{ICON[outcome]} {WORD[outcome]}"


def _history(gates: list[dict]) -> None:
    rows = []
    for g in gates:
        r = g["result"]  # None: stored by an older harness, so only the store's own columns are known
        rows.append({"id": g["id"], "date": when(g["created_at"]), "task": g["task"], "checkpoint": g["checkpoint"],
                     "outcome": _badge(g), "metric": r and r.metric, "candidate": r and with_ci(r.candidate.quality),
                     "baseline": r and r.baseline.label, "baseline_quality": r and with_ci(r.baseline.quality),
                     "difference": r and points_with_ci(r.difference), "failed": r and ", ".join(r.failed),
                     "inconclusive": r and ", ".join(r.inconclusive),
                     "candidate_run": g["candidate_run_id"], "baseline_run": g["baseline_run_id"]})
    counts = {o: sum(_outcome(g) == o for g in gates) for o in WORD}
    st.caption(f"{len(gates)} gate results, newest first: {counts['pass']} passed, {counts['fail']} failed, "
               f"{counts['inconclusive']} inconclusive.")
    cfg = st.column_config
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "date": cfg.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "candidate": cfg.TextColumn("candidate % [95% CI]"),
        "baseline_quality": cfg.TextColumn("baseline % [95% CI]"),
        "difference": cfg.TextColumn("candidate − baseline (points)"),
        "failed": cfg.TextColumn("failed rules"),
        "inconclusive": cfg.TextColumn("inconclusive rules", help="neither shown within the limit nor beyond "
                                                                  "it: more eval examples (or probe text) would "
                                                                  "decide them"),
    })


def view(path: str, sig: tuple) -> None:
    gates = _gates(path, sig)
    if gates is None:
        st.info("No gate results: this store was created before gate results existed.")
        return
    if not gates:
        st.info("No gate results yet: `harness gate` records one each time it checks a checkpoint.")
        return
    _history(gates)
    by_id = {g["id"]: g for g in gates}
    chosen = st.selectbox("Rules of gate", list(by_id), key="gate_id",
                          format_func=lambda i: f"{i} · {by_id[i]['task']} · {by_id[i]['checkpoint']} · "
                                                f"{_badge(by_id[i])}")
    result = by_id[chosen]["result"]
    if result is None:
        st.info(f"Gate {chosen} was stored by an older harness: run `harness gate` again to see its rules here.")
        return
    rules = [rule.model_dump(include={"name", "outcome", "threshold", "observed", "message"}) for rule in result.rules]
    # As text: a skipped rule has no threshold, shown blank rather than as None.
    st.dataframe(pd.DataFrame([{k: "" if v is None else str(v) for k, v in r.items()} for r in rules]), hide_index=True)
