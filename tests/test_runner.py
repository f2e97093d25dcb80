"""harness/runner.py: run_strategy on the tiny model with a strategy of the test's own, so what is
checked is the runner: batching, prediction, scoring, token counts, latency and traces."""

from __future__ import annotations

import time

import pytest
import yaml

from harness.backends.base import Generation
from harness.data import load_data
from harness.examples import Prompted
from harness.prompting import build_messages
from harness.registry import load_backend
from harness.runner import run_strategy
from harness.task import load_task
from tests.conftest import TOPICS, topic_rows, write_jsonl

QA = [{"id": f"q{i}", "text": f"what is the capital of {c} ?", "label": a}
      for i, (c, a) in enumerate([("france", "paris"), ("germany", "berlin"), ("italy", "rome"),
                                  ("spain", "madrid"), ("portugal", "lisbon")])]


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return load_backend(str(tiny_model_dir))


class Recording:
    """Builds the task's own prompt and records which examples it was asked for, in order."""

    def __init__(self, task, backend):
        self.task, self.backend, self.asked = task, backend, []

    def messages(self, example):
        self.asked.append(example.id)
        return Prompted(build_messages(self.task, example, self.backend), {"seen": example.id, "call": len(self.asked)})


class ScriptedGenerations:
    """The tiny model's tokenizer and templates, with a fixed generation (a random model's is noise)."""

    def __init__(self, backend, text: str):
        self.backend, self.text, self.max_new_tokens = backend, text, []

    def render(self, messages):
        return self.backend.render(messages)

    def generate(self, prompts, max_new_tokens, schema=None, stop=()):
        self.max_new_tokens.append(max_new_tokens)
        return [Generation(self.text, p.n_tokens, 7) for p in prompts]


def run(task, strategy, backend, examples):
    batches, progress = [], []
    run_strategy(task, strategy, backend, examples, on_batch=batches.append, progress=progress.append)
    return batches, progress


@pytest.fixture(scope="module")
def classification(tmp_path_factory, tiny_model_dir, backend):
    """One classification run shared by the tests that inspect it (the task make_task writes, with
    batches of 5 and two metrics)."""
    folder = tmp_path_factory.mktemp("runner")
    # Inputs of many lengths, in no particular order, so the sort has work to do.
    rows = topic_rows(4, offset=10)
    write_jsonl(folder / "train.jsonl", topic_rows(4))
    write_jsonl(folder / "eval.jsonl", rows[::2] + rows[1::2])
    spec = {"name": "tiny_topics", "type": "classification", "model": str(tiny_model_dir),
            "data": {"train": "train.jsonl", "eval": "eval.jsonl"},
            "fields": {"id": "id", "input": "text", "target": "label"},
            "prompt": {"system": "answer with one word", "template": "article : {{ text }} topic ?"},
            "labels": list(TOPICS), "metrics": ["accuracy", "exact_match"],
            "strategies": {"zero_shot": {}}, "limits": {"batch_size": 5}}
    (folder / "task.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    task = load_task(folder / "task.yaml")
    data = load_data(task)
    strategy = Recording(task, backend)
    batches, progress = run(task, strategy, backend, data.eval)
    return task, data, strategy, batches, progress


def test_every_example_gets_exactly_one_result(classification):
    _, data, strategy, batches, progress = classification
    ids = [r.example_id for b in batches for r in b]
    assert sorted(ids) == sorted(e.id for e in data.eval) and len(ids) == len(set(ids)) == 12
    assert sorted(strategy.asked) == sorted(ids) and len(strategy.asked) == 12  # each prompt built once
    assert progress == [len(b) for b in batches]


def test_batches_are_bounded_and_sorted_by_prompt_length(classification):
    task, data, strategy, batches, _ = classification
    assert [len(b) for b in batches] == [5, 5, 2]
    lengths = [r.prompt_tokens for b in batches for r in b]
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]
    # Every prompt is built once, before the batches are cut.
    assert strategy.asked == [e.id for e in data.eval]


class Retrieving(Recording):
    """A passage before each query, the longer the shorter the query (as retrieved passages have
    nothing to do with the query's length): the slowest query to build waits `slow_s` as well."""

    def __init__(self, task, backend, slow_id, slow_s):
        super().__init__(task, backend)
        self.slow_id, self.slow_s = slow_id, slow_s

    def messages(self, example):
        if example.id == self.slow_id:
            time.sleep(self.slow_s)
        prompted = super().messages(example)
        passage = "context " * 20 * (60 - len(example.input))
        *turns, query = prompted.messages
        return Prompted([*turns, {**query, "content": passage + query["content"]}], prompted.trace)


def test_batches_follow_the_prompt_not_the_input_and_building_a_prompt_is_its_own_latency(classification, backend):
    task, data, _, _, _ = classification
    slow = data.eval[3].id
    batches, _ = run(task, Retrieving(task, backend, slow, 0.2), backend, data.eval)
    results = [r for b in batches for r in b]
    by_id = {e.id: e for e in data.eval}
    prompt_lengths = [r.prompt_tokens for r in results]
    input_lengths = [len(by_id[r.example_id].input) for r in results]
    assert prompt_lengths == sorted(prompt_lengths)
    assert input_lengths == sorted(input_lengths, reverse=True) and input_lengths[0] > input_lengths[-1]
    # The batch's time is shared; the 0.2 s spent building one prompt is that example's alone.
    (batch,) = [b for b in batches if slow in {r.example_id for r in b}]
    mine = next(r.latency_ms for r in batch if r.example_id == slow)
    assert mine - max(r.latency_ms for r in batch if r.example_id != slow) > 100


def test_trace_is_stored_in_extra(classification):
    _, _, _, batches, _ = classification
    for b in batches:
        for r in b:
            assert r.extra["seen"] == r.example_id and isinstance(r.extra["call"], int)


def test_classification_predicts_the_argmax_label(classification):
    task, data, _, batches, _ = classification
    labels = task.config.labels
    targets = {e.id: e.target for e in data.eval}
    results = [r for b in batches for r in b]
    for r in results:
        logprobs = r.extra["logprobs"]
        assert list(logprobs) == labels and all(v < 0 for v in logprobs.values())
        assert r.prediction == max(labels, key=logprobs.__getitem__)
        assert r.target == targets[r.example_id]
        assert set(r.scores) == {"accuracy", "exact_match"}
        assert r.scores["accuracy"] == float(r.prediction == r.target)
        assert r.output_tokens == 0
    # A random model still spreads its scores: the logprobs differ between examples.
    assert len({tuple(r.extra["logprobs"].values()) for r in results}) > 1


def test_latency_is_positive(classification):
    _, _, _, batches, _ = classification
    assert all(r.latency_ms > 0 for b in batches for r in b)


def test_prompt_and_its_token_count(classification, backend):
    task, data, _, batches, _ = classification
    by_id = {e.id: e for e in data.eval}
    for r in (r for b in batches for r in b):
        expected = backend.render(build_messages(task, by_id[r.example_id], backend)).text
        assert r.prompt == expected and by_id[r.example_id].input in r.prompt
        assert r.prompt_tokens == backend.count_tokens([r.prompt])[0] > 0


def test_no_examples_no_batches(make_task, backend):
    task = load_task(make_task())
    batches, progress = run(task, Recording(task, backend), backend, [])
    assert batches == [] and progress == []


def test_short_answer_keeps_the_first_line(make_task, backend):
    task = load_task(make_task(type="short_answer", labels=None, train=QA[3:], eval=QA[:3],
                               limits={"batch_size": 2, "max_new_tokens": 9}))
    data = load_data(task)
    scripted = ScriptedGenerations(backend, "\n  paris \nberlin and more")
    batches, _ = run(task, Recording(task, backend), scripted, data.eval)
    results = {r.example_id: r for b in batches for r in b}
    assert set(results) == {"q0", "q1", "q2"} and [len(b) for b in batches] == [2, 1]
    assert scripted.max_new_tokens == [9, 9]  # the task's generation budget, once per batch
    for r in results.values():
        assert r.prediction == "paris"
        assert r.extra["raw_output"] == "\n  paris \nberlin and more" and r.extra["seen"] == r.example_id
        assert r.output_tokens == 7 and r.prompt_tokens == backend.count_tokens([r.prompt])[0]
        assert set(r.scores) == {"exact_match", "token_f1", "contains"}  # the lenient metric always
    assert results["q0"].scores["exact_match"] == results["q0"].scores["contains"] == 1.0  # france -> paris
    # germany -> berlin: the second line is not the answer, even leniently
    assert results["q1"].scores["exact_match"] == results["q1"].scores["contains"] == 0.0


def test_short_answer_already_one_line_stores_no_raw_output(make_task, backend):
    task = load_task(make_task(type="short_answer", labels=None, train=QA[3:], eval=QA[:3]))
    batches, _ = run(task, Recording(task, backend), ScriptedGenerations(backend, "paris"), load_data(task).eval)
    for r in (r for b in batches for r in b):
        assert r.prediction == "paris" and "raw_output" not in r.extra


def test_generation_keeps_every_line(make_task, backend):
    task = load_task(make_task(type="generation", labels=None, train=QA[3:], eval=QA[:3]))
    text = "paris\nis the capital"
    batches, _ = run(task, Recording(task, backend), ScriptedGenerations(backend, text), load_data(task).eval)
    results = {r.example_id: r for b in batches for r in b}
    for r in results.values():
        assert r.prediction == text and "raw_output" not in r.extra
        assert set(r.scores) == {"rouge_l"} and 0 <= r.scores["rouge_l"] <= 1
    assert results["q0"].scores["rouge_l"] > results["q1"].scores["rouge_l"]  # scored against each target


def test_real_generation_on_the_tiny_model(make_task, backend):
    task = load_task(make_task(type="short_answer", labels=None, train=QA[3:], eval=QA[:3],
                               limits={"batch_size": 2, "max_new_tokens": 4}))
    batches, _ = run(task, Recording(task, backend), backend, load_data(task).eval)
    results = [r for b in batches for r in b]
    assert [len(b) for b in batches] == [2, 1]
    for r in results:
        assert 1 <= r.output_tokens <= 4 and "\n" not in r.prediction
        raw = r.extra.get("raw_output", r.prediction)
        assert r.prediction == next((line.strip() for line in raw.splitlines() if line.strip()), "")
