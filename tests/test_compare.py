"""`harness compare` end to end on a tiny model: report shape, store reuse, resume, provenance."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.compare import compare
from harness.data import load_data
from harness.store import Store
from harness.task import load_task
from strategies.demos import select_demos


def test_compare_writes_report_and_store(make_task, tmp_path, capsys):
    out = tmp_path / "out" / "report.json"
    store = tmp_path / "store.sqlite"
    rc = main(["compare", str(make_task()), "--store", str(store), "--json", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "zero_shot" in printed and "few_shot" in printed and "accuracy" in printed

    report = json.loads(out.read_text())
    assert report["task"] == "tiny_topics" and report["n_examples"] == 12
    assert [s["name"] for s in report["strategies"]] == ["zero_shot", "few_shot"]
    for s in report["strategies"]:
        q = s["quality"]
        assert q["metric"] == "accuracy" and 0 <= q["ci_low"] <= q["value"] <= q["ci_high"] <= 1
        assert 0 < s["latency_ms"]["p50"] <= s["latency_ms"]["p95"]
        assert s["tokens"]["prompt_mean"] > 0 and s["tokens"]["output_mean"] == 0
        assert s["throughput_eps"] > 0 and s["peak_memory_mb"] > 0
    zero, few = report["strategies"]
    # Three demonstrations make the prompt longer: the token counts must show it.
    assert few["tokens"]["prompt_mean"] > zero["tokens"]["prompt_mean"] + 20
    prov = report["provenance"]
    assert prov["data_hash"] and prov["packages"]["torch"] and prov["hardware"]["cpu_count"]

    db = Store(store)
    run = db.run(few["run_id"])
    assert run["status"] == "finished" and run["provenance"]["data_hash"] == report["data_hash"]
    rows = db.examples(few["run_id"])
    assert len(rows) == 12 and all(r["prediction"] in ("sport", "business", "tech") for r in rows)
    assert all(set(r["extra"]["logprobs"]) == {"sport", "business", "tech"} for r in rows)
    assert len(db.comparisons()) == 1


def test_an_input_longer_than_the_context_is_cut_to_fit_and_counted(make_task, tmp_path, capsys):
    from tests.conftest import topic_rows

    rows = topic_rows(4, offset=10)
    rows[5]["text"] = "the " * 5000  # the tiny model's context is 512 tokens
    store = tmp_path / "store.sqlite"
    rc = main(["compare", str(make_task(eval=rows)), "--store", str(store), "--no-progress"])
    assert rc == 0
    assert "zero_shot: 1 of 12 inputs cut to fit the model's context" in capsys.readouterr().out
    db = Store(store)
    report = db.comparisons()[0]["report"]
    for row in report["strategies"]:
        assert row["truncated_inputs"] == 1
        examples = {e["example_id"]: e for e in db.examples(row["run_id"])}
        cut = examples[rows[5]["id"]]
        # The prompt and the one-token label delimiter plus the longest label fit the 512 positions.
        assert cut["prompt_tokens"] + 2 <= 512 < 5000
        assert 0 < cut["extra"]["input_truncated_to"] < 5000
        assert all("input_truncated_to" not in e["extra"] for i, e in examples.items() if i != rows[5]["id"])


def test_finished_runs_are_reused_and_force_recomputes(make_task, tmp_path, monkeypatch):
    path, store = make_task(), tmp_path / "store.sqlite"
    first = compare(path, store_path=store, progress=False)
    calls = []
    import harness.compare as mod

    real = mod.run_strategy
    monkeypatch.setattr(mod, "run_strategy", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    again = compare(path, store_path=store, progress=False)
    assert calls == [] and all(s.reused for s in again.strategies)
    assert [s.quality for s in again.strategies] == [s.quality for s in first.strategies]

    forced = compare(path, store_path=store, progress=False, force=True)
    assert len(calls) == 2 and not any(s.reused for s in forced.strategies)

    # A changed parameter is a different experiment: only that strategy runs again.
    changed = make_task(strategies={"zero_shot": {}, "few_shot": {"k": 2}})
    calls.clear()
    compare(changed, store_path=store, progress=False)
    assert len(calls) == 1


def test_interrupted_run_resumes_where_it_stopped(make_task, tmp_path, monkeypatch):
    path, store = make_task(), tmp_path / "store.sqlite"
    real_add = Store.add_examples
    batches = []

    def add_then_die(self, run_id, results):
        real_add(self, run_id, results)
        batches.append(len(results))
        if len(batches) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Store, "add_examples", add_then_die)
    assert main(["compare", str(path), "--store", str(store), "--strategies", "zero_shot", "--no-progress"]) == 130
    monkeypatch.setattr(Store, "add_examples", real_add)

    report = compare(path, store_path=store, strategies=["zero_shot"], progress=False)
    (row,) = report.strategies
    assert row.resumed_from == 4 and row.n_examples == 12
    assert len(Store(store).examples(row.run_id)) == 12


def test_limit_takes_a_seeded_sample(make_task):
    path = make_task()
    a = load_data(load_task(path, limit=5)).eval
    b = load_data(load_task(path, limit=5)).eval
    assert [e.id for e in a] == [e.id for e in b] and len(a) == 5


def test_few_shot_pool_is_train_only_and_balanced(make_task):
    task = load_task(make_task())
    data = load_data(task)
    eval_ids = {e.id for e in data.eval}
    demos = select_demos(data.train, 6, seed=1, by_label=True)
    assert not {d.id for d in demos} & eval_ids
    assert {d.target for d in demos} == {"sport", "business", "tech"}
    assert sorted(d.target for d in demos) == sorted(["sport", "business", "tech"] * 2)
    assert [d.id for d in select_demos(data.train, 6, seed=1, by_label=True)] == [d.id for d in demos]


def test_few_shot_k_larger_than_pool_is_refused(make_task):
    from harness.arm import build
    from harness.errors import HarnessError

    task = load_task(make_task(strategies={"few_shot": {"k": 13}}))
    with pytest.raises(HarnessError, match="only 12") as info:
        build(task.arms["few_shot"], task).prepare(load_data(task), None)
    assert info.value.where.endswith("strategies.few_shot.k")


def test_few_shot_prompt_contains_demos_not_the_query_answer(make_task, tiny_model_dir):
    from harness.arm import build
    from harness.registry import load_backend

    task = load_task(make_task())
    data = load_data(task)
    backend = load_backend(str(tiny_model_dir))
    few = build(task.arms["few_shot"], task)
    few.prepare(data, backend)
    turns = few.messages(data.eval[0]).messages
    demos = few.demos.fixed
    assert [t["role"] for t in turns] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert [t["content"] for t in turns[2:-1:2]] == [d.target for d in demos]
    assert data.eval[0].input in turns[-1]["content"]
    assert few.record() == {"axes": task.arms["few_shot"].axes(), "demo_ids": [d.id for d in demos]}


def test_help_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, contextlib, io\nfrom harness.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['compare', '--help'])\n"
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'evaluate', 'scipy') if m in sys.modules]\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("task_type, metrics", [("short_answer", ["exact_match", "token_f1", "contains"]),
                                                ("generation", ["rouge_l"])])
def test_generative_task_types(make_task, tmp_path, task_type, metrics):
    qa = [{"id": f"q{i}", "text": f"what is the capital of {c} ?", "label": a}
          for i, (c, a) in enumerate([("france", "paris"), ("germany", "berlin"), ("italy", "rome"),
                                      ("spain", "madrid"), ("portugal", "lisbon")])]
    path = make_task(type=task_type, labels=None, train=qa[:3], eval=qa[3:],
                     limits={"batch_size": 2, "max_new_tokens": 5})
    report = compare(path, store_path=tmp_path / "s.sqlite", progress=False)
    for s in report.strategies:
        assert list(s.metrics) == metrics and s.quality.metric == metrics[0]
        assert 1 <= s.tokens.output_mean <= 5
    rows = Store(tmp_path / "s.sqlite").examples(report.strategies[0].run_id)
    if task_type == "short_answer":
        # Short answers are cut to their first line before scoring.
        assert all("\n" not in r["prediction"] for r in rows)
