"""The dashboard page: `harness dashboard [--store PATH]` runs it with Streamlit.

Four views of one store, one file each under dashboard/views/: a comparison, an example explorer,
every run, and the history of gate results. This page picks the comparison in the sidebar and
draws only the open view. Reads are cached on the store file's signature, so a store a compare is
writing shows its new rows on the next rerun."""

from __future__ import annotations

import argparse
import os
import sys

import streamlit as st

from dashboard import loaders
from dashboard.loaders import StoreProblem
from dashboard.views import comparison, examples, gates, runs
from dashboard.views.common import when
from harness.store import DEFAULT_PATH

VIEWS = ["Comparison", "Examples", "Runs", "Gates"]


def _store_path() -> str:
    # `harness dashboard` passes --store after Streamlit's `--`; run by hand, the CLI's default applies.
    parser = argparse.ArgumentParser(prog="dashboard/app.py")
    parser.add_argument("--store", default=os.environ.get("HARNESS_STORE", DEFAULT_PATH))
    return os.path.abspath(parser.parse_known_args(sys.argv[1:])[0].store)


# Cached on the store's signature, so a write shows on the next rerun.
@st.cache_data(show_spinner=False, max_entries=8)
def _comparisons(path: str, sig: tuple) -> list[dict]:
    return loaders.comparisons(path)


def _pick_comparison(comparisons: list[dict]) -> dict:
    """The sidebar's task and comparison; by default the newest comparison's task, newest first."""
    tasks = list(dict.fromkeys(c["task"] for c in comparisons))
    task = st.sidebar.selectbox("Task", tasks, key="task")
    by_id = {c["id"]: c for c in comparisons if c["task"] == task}

    def label(i: int) -> str:
        report = by_id[i]["report"]
        return (f"#{i} · {when(by_id[i]['created_at']):%Y-%m-%d %H:%M} · "
                f"{report.recommendation.verdict if report else 'no verdict'}")

    return by_id[st.sidebar.selectbox("Comparison", list(by_id), key="comparison_id", format_func=label)]


def main() -> None:
    st.set_page_config(page_title="ft-harness", layout="wide")
    path = _store_path()
    st.sidebar.title("ft-harness")
    st.sidebar.caption(f"Store: {path}")
    # A rerun re-reads whatever a running compare has committed since.
    st.sidebar.button("Refresh", key="refresh")
    sig = loaders.signature(path)
    try:
        stored = _comparisons(path, sig)
    except StoreProblem as e:
        st.error(str(e))
        return
    chosen = _pick_comparison(stored) if stored else None
    report = chosen and chosen["report"]
    if chosen is None:
        st.info("No comparison in this store yet. `harness compare TASK.yaml` stores one when it finishes; "
                "runs in progress are listed under Runs.")
    else:
        st.header(f"{report.task} · {report.model} · {report.n_examples} eval examples" if report else chosen["task"])
        st.caption(f"Comparison {chosen['id']}, recorded {when(chosen['created_at']):%Y-%m-%d %H:%M}")
        if report is None:
            st.warning(f"Comparison {chosen['id']} was stored by an older harness, whose report lacks or differs "
                       f"in {', '.join(chosen['unreadable'])}; run `harness compare` on its task again to see it "
                       f"here.")
    tabs = dict(zip(VIEWS, st.tabs(VIEWS, key="view", on_change="rerun")))
    try:
        with tabs["Comparison"]:
            if tabs["Comparison"].open and report is not None:
                comparison.view(report)
        with tabs["Examples"]:
            if tabs["Examples"].open and report is not None:
                examples.view(path, sig, report)
        with tabs["Runs"]:
            if tabs["Runs"].open:
                runs.view(path, sig, stored)
        with tabs["Gates"]:
            if tabs["Gates"].open:
                gates.view(path, sig)
    except StoreProblem as e:  # the store went away or broke between two reads
        st.error(str(e))


main()
