"""Dashboard speed: the first render of a store holding 100 runs of 1,000 examples each (target:
under 2 s).

The store is synthetic but schema-true, typed results written through the Store API: 25
comparisons of four strategies (zero_shot, few_shot, rag, lora), 1,000 examples per run with
prompts of realistic length, and a gate result per comparison. Each run's report row, costs, paired
statistics, verdict and gate rules come from the harness's own functions (`summarise`, `add_costs`,
`paired_comparisons`, `recommend`, `evaluate_rules`), as in `harness compare` and `harness gate`.
tests/test_dashboard.py builds its small stores with the same `fill_store`.

Two measurements of the first render of the default view (the newest comparison: verdict,
strategy table, plots):
1. AppTest: the page's first run in a fresh Python process (Streamlit imported, nothing else: the
   page's own imports, store reads and plots are all in the figure), then a second session in the
   same process (a server that has already served someone).
2. Browser: a fresh `harness dashboard` server each time, and Debian's chromium through playwright
   from navigation until the verdict, the strategy table and a plot are on screen; then two more
   visits in new browser sessions on the same, now running, server. Then the same
   for a bare Streamlit page with one line and one small table: the part of the figure that is
   Streamlit's own (loading its frontend, drawing a table). Skipped when /usr/bin/chromium is
   missing (`make test` installs it).

    .venv/bin/python benchmarks/speed_dashboard.py [--runs 100] [--examples 1000] [--repeats 3] [--store PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from harness.measure import timer

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
CHROMIUM = "/usr/bin/chromium"
LABELS = ["business", "entertainment", "politics", "sport", "tech"]
STRATEGIES = ("zero_shot", "few_shot", "rag", "lora")
# Per strategy: the chance of a right answer, prompt characters (few-shot repeats its
# demonstrations, rag prepends passages) and milliseconds per example.
PROFILE = {"zero_shot": (0.35, 450, 220), "few_shot": (0.45, 1800, 1270), "rag": (0.50, 1500, 900),
           "lora": (0.80, 450, 230)}
N_PARAMS = 134_515_008  # the default model's
WORDS = "the a of and market team film election software shares match vote phone music star rose won".split()


def _text(rng: random.Random, chars: int) -> str:
    words = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def _examples(rng: random.Random, name: str, golds: list[str], texts: list[str], agreed: list[str | None]):
    """One strategy's results; where `agreed` names an answer, every strategy gives it."""
    from harness.runner import ExampleResult

    accuracy, chars, ms = PROFILE[name]
    out = []
    for i, (gold, text) in enumerate(zip(golds, texts)):
        prediction = agreed[i] or (gold if rng.random() < accuracy else rng.choice([x for x in LABELS if x != gold]))
        prompt = _text(rng, chars - len(text)) + "\nArticle: " + text + "\nWhich topic?"
        extra = {}
        if name == "rag":
            extra = {"retrieved": [{"chunk_id": f"doc{rng.randrange(500)}#{j}", "doc_id": f"doc{rng.randrange(500)}",
                                    "score": round(0.8 - 0.1 * j - rng.random() / 20, 4)} for j in range(3)],
                     "n_shown": rng.choice([2, 3])}
        out.append(ExampleResult(example_id=f"ex-{i:05d}", prompt=prompt, prediction=prediction, target=gold,
                                 scores={"accuracy": float(prediction == gold)}, prompt_tokens=len(prompt) // 4,
                                 output_tokens=1, latency_ms=rng.gauss(ms, ms / 10), extra=extra))
    return out


def _forgetting(name: str):
    from harness.results import Forgetting, ProbeScores

    base = ProbeScores(loss=2.91, perplexity=18.4, qa_contains=0.70, tokens=4800)
    if name != "lora":
        return Forgetting(probe="shipped", weights_changed=False, base=base, adapted=base, delta_loss=0.0,
                          delta_loss_ci_low=0.0, delta_loss_ci_high=0.0, delta_perplexity=0.0, delta_qa_contains=0.0,
                          delta_qa_contains_ci_low=0.0, delta_qa_contains_ci_high=0.0)
    adapted = ProbeScores(loss=2.95, perplexity=19.1, qa_contains=0.675, tokens=4800)
    return Forgetting(probe="shipped", weights_changed=True, base=base, adapted=adapted, delta_loss=0.04,
                      delta_loss_ci_low=0.03, delta_loss_ci_high=0.05, delta_perplexity=0.7, delta_qa_contains=-0.025,
                      delta_qa_contains_ci_low=-0.1, delta_qa_contains_ci_high=0.05)


def _strategy_fields(name: str, n_train: int) -> dict:
    """The fields a strategy adds to its report row (strategies' `summary`), at realistic values."""
    from harness.results import Retrieval, Training

    if name == "lora":
        tokens = 180 * n_train
        return {"weights": "lora", "training": Training(
            wall_s=410.0, steps=n_train // 8, epochs=1, train_examples=n_train, validation_examples=64,
            tokens_seen=tokens, tokens_per_s=tokens / 410, flops=4 * N_PARAMS * tokens,
            flops_formula="4 * params * tokens_seen", peak_memory_mb=2900.0, trainable_params=4_884_480,
            adapter_bytes=19_600_000, first_loss=3.1, final_loss=0.42, best_eval_loss=0.47,
            loss_history=[3.1, 1.2, 0.6, 0.42], adapter_path="/synthetic/adapter")}
    if name == "rag":
        return {"retrieval": Retrieval(index="flat", embedder="all-MiniLM-L6-v2", documents=500, chunks=1900,
                                       chunks_embedded=1900, chunks_reused=0, index_from_cache=False, embed_s=21.0,
                                       index_build_s=0.1, passages_shown_mean=2.5)}
    return {}


def _gate(store, task: str, c: int, rows: dict, scores: dict, prov, decision, seed: int) -> int:
    """A gate result of the comparison's lora run against its zero_shot run, as `harness gate` records
    one; every other comparison under strict rules (90% quality, forgetting under 0.02) that the lora
    runs fail, so the history holds passes and failures."""
    from harness.config import GateConfig
    from harness.gate import judge

    rules = GateConfig(min_quality=0.9, max_forgetting=0.02) if c % 2 else GateConfig()
    candidate, baseline = rows["lora"], rows["zero_shot"]
    ids = sorted(scores["lora"])
    result = judge(rules, "accuracy", candidate, baseline,
                   {"kind": "run", "label": f"run {baseline.run_id} (zero_shot)"},
                   [scores["zero_shot"][i] for i in ids], [scores["lora"][i] for i in ids], seed=seed,
                   power=decision.power, task=task, task_file="synthetic", checkpoint=f"/synthetic/checkpoint-{c}",
                   provenance=prov)
    return store.save_gate(task, result.checkpoint, candidate.run_id, baseline.run_id, result.passed,
                           result.model_dump(mode="json", exclude={"gate_id"}))


def fill_store(path: str | Path, *, comparisons: int = 25, examples: int = 1000, tasks: tuple[str, ...] = ("news",),
               seed: int = 0) -> list[int]:
    """Write `comparisons` comparisons of the four strategies, `examples` examples per run, and a
    gate result for each, into the store at `path`, tasks in turn; returns the comparison ids.
    Strategies' predictions differ on a seeded random half of the examples and agree on the rest."""
    from harness.compare import summarise
    from harness.config import CostConfig, DecisionConfig
    from harness.cost import add_costs
    from harness.measure import provenance
    from harness.results import Assumptions, ComparisonReport, Comparisons, Provenance
    from harness.stats import CONFIDENCE, paired_comparisons
    from harness.store import Store
    from harness.verdict.decide import recommend
    from harness.verdict.text import explain

    rng = random.Random(seed)
    cost, decision = CostConfig(), DecisionConfig()
    prov = Provenance(**provenance(), task_file="synthetic", data_hash="synthetic", data_source="speed_dashboard")
    store = Store(path)
    ids = []
    try:
        for c in range(comparisons):
            task = tasks[c % len(tasks)]
            summary_task = SimpleNamespace(metric_names=["accuracy"], seed=seed)
            golds = [rng.choice(LABELS) for _ in range(examples)]
            texts = [_text(rng, 300) for _ in range(examples)]
            # Easy examples every strategy gets right, hard ones all get wrong the same way, and the
            # rest, where they differ: what the example explorer's disagreement filter is for.
            agreed = [rng.choice([gold, LABELS[LABELS.index(gold) - 1], None, None]) for gold in golds]
            rows, scores = [], {}
            for name in STRATEGIES:
                run_id = store.start_run(f"synthetic-{seed}-{c}-{name}", task=task, strategy=name,
                                         model="smollm2-135m-instruct", config={"task": task, "params": {}},
                                         provenance=prov.model_dump(mode="json"))
                store.add_examples(run_id, _examples(rng, name, golds, texts, agreed))
                stored = store.examples(run_id)
                row = summarise(summary_task, name, run_id, stored, {
                    "params": {"k": 4} if name == "few_shot" else {}, "prepare_s": 21.0 if name == "rag" else 0.0,
                    "peak_memory_mb": 1500.0, "forgetting": _forgetting(name), **_strategy_fields(name, 2000)})
                store.finish_run(run_id, row.model_dump(mode="json"), {})
                rows.append(row)
                scores[name] = {e["example_id"]: e["scores"]["accuracy"] for e in stored}
            rows = add_costs(rows, cost, N_PARAMS, decision.monthly_requests)
            comps = Comparisons(metric="accuracy", alpha=decision.alpha, power=decision.power, confidence=CONFIDENCE,
                                pairs=paired_comparisons(scores, seed=seed, alpha=decision.alpha, power=decision.power))
            report = ComparisonReport(
                task=task, task_file="synthetic", model="smollm2-135m-instruct", model_params=N_PARAMS,
                task_type="classification", n_examples=examples, data_hash="synthetic", provenance=prov,
                strategies=rows, comparisons=comps, assumptions=Assumptions(cost=cost, decision=decision),
                recommendation=explain(recommend(rows, comps, [], decision)))
            ids.append(store.save_comparison(task, report.model_dump(mode="json", exclude={"comparison_id"})))
            _gate(store, task, c, {r.name: r for r in rows}, scores, prov, decision, seed)
    finally:
        store.close()
    return ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(args: list[str], timeout: float):
    """A Streamlit server started by `python -m ARGS --port PORT` on a free loopback port until the
    block ends; yields its URL."""
    port = free_port()
    # Its own process group: `harness dashboard` runs Streamlit as a child, and both must stop.
    proc = subprocess.Popen([sys.executable, "-m", *args, str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}: {proc.stdout.read().decode()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nothing answered on {url} within {timeout:g} s") from None
                time.sleep(0.2)
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM to the server's process group, then SIGKILL to whatever is left after `grace`
    seconds: Streamlit has been seen to outlive a SIGTERM, orphaned, holding its port."""
    os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap our own child, so that only live processes keep the group alive
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def serving(store: str | Path, timeout: float = 60):
    """`harness dashboard` over the store on a free loopback port until the block ends; yields its URL."""
    return _server(["harness", "dashboard", "--store", str(store), "--port"], timeout)


def wait_for_first_render(page, timeout_ms: float = 30_000) -> None:
    """Until the default view is on screen: the verdict, the strategy table and a plot."""
    page.locator(".st-key-verdict").get_by_text("Verdict:").wait_for(timeout=timeout_ms)
    page.locator(".st-key-strategies [data-testid='stDataFrame'] canvas").first.wait_for(timeout=timeout_ms)
    page.locator(".st-key-charts [data-testid='stVegaLiteChart'] svg.marks").first.wait_for(timeout=timeout_ms)


# Run in a fresh interpreter so the page's own imports count, as on a newly started server.
_APPTEST = """
import sys
from streamlit.testing.v1 import AppTest
from harness.measure import timer
sys.argv = ["app.py", "--store", sys.argv[1]]
times = []
for _ in range(2):
    at = AppTest.from_file({app!r}, default_timeout=120)
    with timer() as elapsed:
        at.run()
    times.append(elapsed.s)
    assert not at.exception, at.exception
    assert any("Verdict" in e.value for kind in ("success", "info", "warning") for e in at.get(kind)), "no verdict"
print(*times)
"""


def apptest_times(store: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", _APPTEST.format(app=str(APP)), str(store)], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"the AppTest run failed:\n{out.stderr}")
    cold, warm = map(float, out.stdout.split())
    return cold, warm


# The floor: what Streamlit itself takes to show a line of text and one small table, on the same
# machine and browser. The dashboard's own share of the browser figure is what lies above it.
_FLOOR_APP = """
import pandas as pd
import streamlit as st
st.markdown("Verdict: none")
st.dataframe(pd.DataFrame({f"c{i}": [1.0, 2.0, 3.0, 4.0] for i in range(15)}))
"""


def _wait_for_floor(page, timeout_ms: float = 30_000) -> None:
    page.get_by_text("Verdict: none").wait_for(timeout=timeout_ms)
    page.locator("[data-testid='stDataFrame'] canvas").first.wait_for(timeout=timeout_ms)


def browser_times(server, wait, visits: int) -> list[float]:
    """Seconds from navigation until `wait` returns, for `visits` new browser sessions one after
    another on a server just started by `server()`: the first visit is a fresh server's, the
    others are a running server's (a stakeholder opening the link someone sent)."""
    from playwright.sync_api import sync_playwright

    with server() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            times = []
            for _ in range(visits):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                with timer() as elapsed:
                    page.goto(url)
                    wait(page)
                times.append(elapsed.s)
                context.close()
            return times
        finally:
            browser.close()


def _count(store: Path) -> str:
    from harness.store import Store

    reader = Store(store, readonly=True)
    try:
        runs = reader.runs_with_counts()
    finally:
        reader.close()
    return f"{len(runs)} runs, {sum(r['examples'] for r in runs):,} examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="strategy runs in the store (4 per comparison)")
    parser.add_argument("--examples", type=int, default=1000, help="examples per run")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each kind; the median is printed")
    parser.add_argument("--store", type=Path, metavar="PATH",
                        help="keep the synthetic store here, and reuse it if it exists (building takes minutes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / "store.sqlite"
        if not store.exists():
            with timer() as elapsed:
                fill_store(store, comparisons=args.runs // len(STRATEGIES), examples=args.examples,
                           tasks=("news", "support", "legal", "qa", "reviews"))
            print(f"store built in {elapsed.s:.0f} s")
        print(f"store: {_count(store)}, {store.stat().st_size / 1e6:.0f} MB")
        runs = [apptest_times(store) for _ in range(args.repeats)]
        print(f"AppTest first render, fresh process: median {statistics.median(c for c, _ in runs):.2f} s "
              f"over {args.repeats} ({', '.join(f'{c:.2f}' for c, _ in runs)})")
        print(f"AppTest first render of a later session: median {statistics.median(w for _, w in runs):.2f} s")
        if not Path(CHROMIUM).exists():
            print(f"browser: skipped, no {CHROMIUM} (make test installs it)")
            return
        floor_app = Path(tmp) / "floor.py"
        floor_app.write_text(_FLOOR_APP, encoding="utf-8")
        floor = ["streamlit", "run", str(floor_app), "--server.headless", "true", "--server.address", "127.0.0.1",
                 "--browser.gatherUsageStats", "false", "--server.port"]
        for what, server, wait in [
                ("dashboard first render (navigation to verdict + table + plot)",
                 lambda: serving(store), wait_for_first_render),
                ("Streamlit floor (navigation to a line of text + one small table)",
                 lambda: _server(floor, 60), _wait_for_floor)]:
            runs = [browser_times(server, wait, visits=3) for _ in range(args.repeats)]
            fresh, warm = [r[0] for r in runs], [t for r in runs for t in r[1:]]
            print(f"browser {what}: fresh server median {statistics.median(fresh):.2f} s over {len(fresh)} "
                  f"({', '.join(f'{t:.2f}' for t in fresh)}); running server median "
                  f"{statistics.median(warm):.2f} s over {len(warm)}")

if __name__ == "__main__":
    main()
