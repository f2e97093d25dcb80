"""Distillation from a hosted teacher (issue 26), against the real `transformers serve` of
tests/test_hosted.py behind its recording proxy: the teacher's answers on the train inputs go
through the response cache, so a compare killed while the teacher labels them sends no stored
request again when rerun, and a later labelling of the same inputs is answered by the cache alone.
The student is a tiny local model (LoRA needs weights), trained on the served smollm2's answers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from harness.store import Store
from tests.conftest import build_tiny_model
from tests.test_hosted import (  # noqa: F401  (fixtures: the served smollm2 and the proxy in front of it)
    NEWS_EVAL,
    NEWS_LABELS,
    canon,
    hosted,
    killed_compare,
    news_rows,
    one_torch_thread,
    proxy,
    served,
    smollm2,
    write_task,
)

# Train inputs the teacher labels: enough batches that a kill lands between two of them, and enough
# answers that the student keeps 8 after holding one out for validation (strategies/finetune.py).
NEWS_TRAIN = [
    ("d1", "The goalkeeper saved a penalty in the final minute of the cup final.", "sport"),
    ("d2", "The car maker cut two thousand jobs as its sales fell again.", "business"),
    ("d3", "The new smartphone app lets users pay for shopping with their face.", "tech"),
    ("d4", "The minister resigned after a row over the budget in parliament.", "politics"),
    ("d5", "The actor won an award for his role in the new television drama.", "entertainment"),
    ("d6", "The cricket team beat Australia by six wickets in Sydney.", "sport"),
    ("d7", "The central bank raised interest rates to slow rising prices.", "business"),
    ("d8", "The software company fixed a security flaw in its web browser.", "tech"),
    ("d9", "Voters chose a new mayor after a close election campaign.", "politics"),
    ("d10", "The singer cancelled her world tour because of illness.", "entertainment"),
    ("d11", "The boxer kept his world title after twelve hard rounds.", "sport"),
    ("d12", "Online sales helped the supermarket report record profits.", "business"),
]
# A tiny student that moves in a few steps (as tests/test_distill.py, shorter).
LORA = {"max_steps": 4, "eval_steps": 2, "learning_rate": 0.01, "batch_size": 4}
LABELS_RUN = "teacher (labels)"


def asked(record, texts: list[str]) -> str | None:
    """The one of `texts` a request asks about: the input in its last user turn (the teacher's
    demonstrations, earlier turns, show other train inputs)."""
    if not isinstance(record.body, dict) or "messages" not in record.body:
        return None
    (last, *_) = [m for m in reversed(record.body["messages"]) if m.get("role") == "user"]
    found = [t for t in texts if t in str(last.get("content"))]
    assert len(found) <= 1, found
    return found[0] if found else None


def asking(records, texts: list[str]) -> list:
    """The requests that ask about one of these inputs (the load-time check asks about none)."""
    return [r for r in records if asked(r, texts)]


def _counts(db: Path) -> tuple[int, int]:
    """How many of the teacher's answers on the train inputs are stored as examples, and how many
    answers are in the response cache beyond the examples stored (the teacher's eval run has one
    answer per example, the local student none): read without writing."""
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            labelled = con.execute("SELECT count(*) FROM examples JOIN runs ON runs.id = examples.run_id "
                                   "WHERE runs.strategy = ?", (LABELS_RUN,)).fetchone()[0]
            examples = con.execute("SELECT count(*) FROM examples").fetchone()[0]
            return labelled, con.execute("SELECT count(*) FROM responses").fetchone()[0] - examples
        finally:
            con.close()
    except sqlite3.Error:  # no store or no table yet
        return 0, 0


def _labelling_runs(db: Path) -> list[dict]:
    store = Store(db)
    try:
        return [{**r, "answers": store.examples(r["id"])} for r in store.runs_with_counts()
                if r["strategy"] == LABELS_RUN]
    finally:
        store.close()


@pytest.mark.timeout(480)
def test_a_hosted_teachers_labels_are_cached_and_a_killed_labelling_resends_nothing_stored(proxy, tmp_path):  # noqa: F811
    student = build_tiny_model(tmp_path / "student", initializer_range=0.5)
    train_texts = [text for _, text, _ in NEWS_TRAIN]
    eval_rows = NEWS_EVAL[:3]
    eval_texts = [text for _, text, _ in eval_rows]
    # The teacher is shown three demonstrations: asked alone, the served smollm2 begins "This article
    # is about" and names no label within four tokens, so it would teach nothing.
    task = {"model": str(student), "train": news_rows(NEWS_TRAIN), "eval": news_rows(eval_rows),
            "strategies": {"teacher": {"model": hosted(proxy.base_url, max_concurrency=1), "demos": {"k": 3}},
                           "student": {"weights": {"lora": {**LORA, "teacher": "teacher"}}}},
            "limits": {"batch_size": 4, "max_new_tokens": 4}, "decision": {"baselines": "none"}}
    path = write_task(tmp_path, **task)
    db, report = tmp_path / "s.sqlite", tmp_path / "report.json"

    # 1. Killed while the teacher labels the train inputs (four a batch, one request at a time): a
    # batch of answers stored as examples, answers of the next batch in the response cache only, and
    # a request the server has yet to answer.
    def ready() -> bool:
        labelled, cached_only = _counts(db)
        awaiting = any(r.status is None for r in asking(proxy.snapshot(), train_texts))
        return labelled >= 4 and cached_only >= 1 and awaiting

    args, env = killed_compare(path, db, tmp_path, ready, 300)

    killed = Store(db)  # a writer: it recovers the killed writer's WAL
    try:
        cached_ids = {json.loads(r["response"])["response"]["id"]
                      for r in killed.db.execute("SELECT response FROM responses")}
        (labels_run,) = [r for r in killed.runs_with_counts() if r["strategy"] == LABELS_RUN]
        labelled_before = labels_run["examples"]
    finally:
        killed.close()
    assert labels_run["status"] != "finished" and 4 <= labelled_before < len(NEWS_TRAIN)
    seen = proxy.snapshot()
    before = asking(seen, train_texts + eval_texts)
    stored = {canon(r.body) for r in before if r.response and r.response.get("id") in cached_ids}
    in_flight = {canon(r.body) for r in before} - stored
    stored_labels = {canon(r.body) for r in asking(before, train_texts)} & stored
    assert len(stored) == len(cached_ids), "every stored answer is one the server gave"
    # Answered but not yet stored as examples: only the response cache keeps them from being sent again.
    assert len(stored_labels) > labelled_before and in_flight, (len(stored_labels), labelled_before, in_flight)

    # 2. The rerun: nothing whose answer was stored is sent again; the rest once each.
    result = subprocess.run([*args, "--json", str(report)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    after = proxy.snapshot()
    sent_again = [canon(r.body) for r in asking(after[len(seen):], train_texts + eval_texts)]
    assert not set(sent_again) & stored, "a request whose answer was stored was sent again"
    assert len(sent_again) == len(set(sent_again)) == len(train_texts) + len(eval_texts) - len(stored)
    assert in_flight <= set(sent_again)

    # The labelling run is complete: one answer per train input, each the server's answer to it.
    (labelling,) = _labelling_runs(db)
    assert labelling["status"] == "finished"
    answers = {e["example_id"]: e for e in labelling["answers"]}
    assert sorted(answers) == sorted(i for i, _, _ in NEWS_TRAIN)
    served_answer = {}
    for r in asking(after, train_texts):
        if r.status == 200:
            text = asked(r, train_texts)
            served_answer.setdefault(text, set()).add(r.response["choices"][0]["message"]["content"].strip())
    for i, text, _ in NEWS_TRAIN:
        assert text in answers[i]["prompt"], i
        assert served_answer[text] == {answers[i]["extra"]["raw_output"]}, i
    kept = [e for e in answers.values() if e["prediction"].strip() in NEWS_LABELS]
    assert kept, "a teacher that names no label teaches nothing"

    # The student trained on the teacher's kept answers, and its cost counts the labelling.
    rows = {r["name"]: r for r in json.loads(report.read_text())["strategies"]}
    training = rows["student"]["training"]
    assert training["train_examples"] + (training["validation_examples"] or 0) == len(kept)
    assert rows["student"]["labelling"]["teacher"] == "teacher"
    assert rows["student"]["labelling"]["answers"] == len(NEWS_TRAIN)
    assert rows["student"]["labelling"]["kept"] == len(kept)
    assert rows["student"]["cost"]["labelling_usd"] > 0, "a hosted teacher's labelling is priced"

    # 3. A labelling of the same inputs in a new run (the batch size is in the run key and in no
    # request), for the student and a second one: answered by the cache alone. Only the load-time
    # check, which runs before the store is open, reaches the server.
    task["limits"] = {**task["limits"], "batch_size": 2}
    task["strategies"]["student_r4"] = {"weights": {"lora": {**LORA, "r": 4, "teacher": "teacher"}}}
    path = write_task(tmp_path, **task)
    result = subprocess.run([*args, "--json", str(report)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    again = proxy.snapshot()[len(after):]
    assert asking(again, train_texts + eval_texts) == [], "the cache did not answer the labelling"
    assert [canon(r.body) for r in again] == [canon(seen[0].body)]
    runs = _labelling_runs(db)
    assert len(runs) == 2 and all(r["status"] == "finished" for r in runs), "one new labelling run for both"
    assert labelling["id"] in {r["id"] for r in runs}
    for run in runs:
        assert {e["example_id"]: e["prediction"] for e in run["answers"]} == \
               {i: e["prediction"] for i, e in answers.items()}
    rows = {r["name"]: r for r in json.loads(report.read_text())["strategies"]}
    assert not rows["student"]["reused"] and not rows["student_r4"]["reused"]
    assert rows["student_r4"]["labelling"]["answers"] == len(NEWS_TRAIN)
    print(f"\nkilled with {labelled_before} labels and {len(stored_labels)} labelling answers stored and "
          f"{len(in_flight)} request(s) in flight; the rerun sent {len(sent_again)}; the relabelling sent none")
