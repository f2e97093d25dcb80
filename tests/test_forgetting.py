"""harness/forgetting.py: the general-text probe, the weights fingerprint, and the meter that
reports how much an adapted model lost against the base, with paired intervals (exactly nothing
when weights are equal), scoring gold answers so that a change of answer format is not a gain."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

import harness.forgetting as forgetting
from harness.backends.local import TransformersBackend
from harness.errors import HarnessError
from harness.forgetting import (
    DEFAULT_QUESTIONS,
    DEFAULT_TEXT,
    ForgettingMeter,
    Measurement,
    contains,
    load_probe,
    loss_delta_ci,
    question_prompt,
    weights_fingerprint,
)
from harness.registry import load_backend
from harness.task import load_task
from tests.conftest import build_tiny_model


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return load_backend(str(tiny_model_dir))


def perturbed(backend, scale: float = 0.05, name: str = "perturbed") -> TransformersBackend:
    import torch

    model = copy.deepcopy(backend.model)
    weight = model.model.layers[0].mlp.down_proj.weight
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        weight.add_(torch.randn(weight.shape, generator=generator) * scale)
    return TransformersBackend(model, backend.tokenizer, name=name)


@pytest.fixture
def small_probe_task(make_task, tmp_path):
    """A task whose probe is two short texts and two questions (relative to the YAML)."""
    write_lines(tmp_path / "probe" / "text.jsonl", [json.dumps({"text": "the team won the match"}), "",
                                                    json.dumps({"text": "market shares rose", "extra": 1})])
    write_lines(tmp_path / "probe" / "qa.jsonl", [json.dumps({"question": "capital of france ?", "answer": "paris"}),
                                                  json.dumps({"question": "capital of italy ?", "answer": "rome"})])
    return make_task(forgetting={"text": "probe/text.jsonl", "questions": "probe/qa.jsonl", "max_tokens": 16})


def test_default_probe(make_task):
    probe = load_probe(load_task(make_task()))
    assert probe.name == f"{DEFAULT_TEXT.name}+{DEFAULT_QUESTIONS.name}"
    assert len(probe.texts) == 40 and all(t.strip() for t in probe.texts)
    assert len(probe.questions) == 40 and ("What is the capital of France?", ["Paris"]) in probe.questions


def test_custom_probe_files_relative_to_the_task(small_probe_task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # relative to the YAML, not the working directory
    probe = load_probe(load_task(small_probe_task))
    assert probe.name == "text.jsonl+qa.jsonl"
    assert probe.texts == ["the team won the match", "market shares rose"]  # the blank line is skipped
    assert probe.questions == [("capital of france ?", ["paris"]), ("capital of italy ?", ["rome"])]


def test_only_one_custom_file_keeps_the_other_default(make_task, tmp_path):
    write_lines(tmp_path / "qa.jsonl", [json.dumps({"question": "q ?", "answer": "a"})])
    probe = load_probe(load_task(make_task(forgetting={"questions": "qa.jsonl"})))
    assert probe.name == f"{DEFAULT_TEXT.name}+qa.jsonl" and len(probe.texts) == 40
    assert probe.questions == [("q ?", ["a"])]


def test_probe_row_missing_a_field(make_task, tmp_path):
    write_lines(tmp_path / "qa.jsonl", [json.dumps({"question": "q ?", "answer": "a"}), "",
                                        json.dumps({"question": "no answer ?"})])
    with pytest.raises(HarnessError) as info:
        load_probe(load_task(make_task(forgetting={"questions": "qa.jsonl"})))
    # Rows are counted by line, so the number points at the line in an editor.
    assert info.value.where == f"{(tmp_path / 'qa.jsonl').resolve()}: row 3"
    assert info.value.message == "missing field 'answer'"


def test_probe_row_with_an_empty_field(make_task, tmp_path):
    write_lines(tmp_path / "text.jsonl", [json.dumps({"text": ""})])
    with pytest.raises(HarnessError, match="missing field 'text'"):
        load_probe(load_task(make_task(forgetting={"text": "text.jsonl"})))


def test_empty_probe_file(make_task, tmp_path):
    write_lines(tmp_path / "text.jsonl", ["", "   "])
    with pytest.raises(HarnessError) as info:
        load_probe(load_task(make_task(forgetting={"text": "text.jsonl"})))
    assert info.value.where == str((tmp_path / "text.jsonl").resolve()) and "empty" in info.value.message


def test_missing_probe_file(make_task, tmp_path):
    with pytest.raises(HarnessError) as info:
        load_probe(load_task(make_task(forgetting={"text": "nowhere/text.jsonl"})))
    assert info.value.where == str((tmp_path / "nowhere" / "text.jsonl").resolve())
    assert "not found" in info.value.message


def test_malformed_probe_line_is_a_harness_error(make_task, tmp_path):
    write_lines(tmp_path / "text.jsonl", [json.dumps({"text": "fine"}), '{"text": "unclosed'])
    with pytest.raises(HarnessError, match="row 2"):
        load_probe(load_task(make_task(forgetting={"text": "text.jsonl"})))


def test_weights_fingerprint_follows_the_weights(backend):
    same = TransformersBackend(copy.deepcopy(backend.model), backend.tokenizer, name="copy")
    assert weights_fingerprint(same) == weights_fingerprint(backend)
    changed = perturbed(backend)
    assert weights_fingerprint(changed) != weights_fingerprint(backend)
    # A change far smaller than any tolerance still shows: the hash is over the bytes.
    assert weights_fingerprint(perturbed(backend, scale=1e-6)) != weights_fingerprint(backend)


def test_same_weights_forget_exactly_nothing(small_probe_task, backend):
    meter = ForgettingMeter(load_task(small_probe_task), backend)
    copied = TransformersBackend(copy.deepcopy(backend.model), backend.tokenizer, name="copy")
    for other in (backend, copied):
        result = meter.delta(other)
        assert result.weights_changed is False
        assert result.delta_loss == result.delta_loss_ci_low == result.delta_loss_ci_high == 0.0
        assert result.delta_qa_contains == result.delta_qa_contains_ci_low == result.delta_qa_contains_ci_high == 0.0
        assert result.delta_perplexity == 0.0
        assert result.base.loss == result.adapted.loss > 0
        assert result.base.qa_contains == result.adapted.qa_contains
        assert result.probe == "text.jsonl+qa.jsonl"


def test_changed_weights_are_measured_against_the_base(small_probe_task, backend):
    import math

    task = load_task(small_probe_task)
    meter = ForgettingMeter(task, backend)
    changed = perturbed(backend, scale=0.5)
    result = meter.delta(changed)
    assert result.weights_changed is True
    base, adapted = result.base.loss, result.adapted.loss
    assert base > 0 and adapted > 0 and adapted != base
    assert result.delta_loss == pytest.approx(adapted - base)
    assert result.delta_perplexity == pytest.approx(math.exp(adapted) - math.exp(base))
    assert result.base.perplexity == pytest.approx(math.exp(base))
    # Both texts count, every token after the first is predicted, and the cut is at max_tokens (16).
    assert result.base.tokens == result.adapted.tokens == (5 - 1) + (3 - 1)
    # Per question, whether the greedy answer to the chat prompt contains the gold answer.
    questions = meter.probe.questions
    for model, scores in ((backend, result.base), (changed, result.adapted)):
        said = [g.text for g in model.generate([question_prompt(model, q) for q, _ in questions],
                                               forgetting.ANSWER_TOKENS)]
        contained = [contains(t, gold) for t, (_, gold) in zip(said, questions)]
        assert scores.qa_contains == pytest.approx(np.mean(contained))
    assert result.delta_qa_contains == pytest.approx(result.adapted.qa_contains - result.base.qa_contains)


def test_containment_accepts_any_form_of_the_right_answer_and_nothing_else():
    assert contains("The capital of France is Paris.", ["Paris"])
    assert contains("paris", ["Paris"])
    assert contains("It was written by Shakespeare", ["William Shakespeare", "Shakespeare"])
    assert contains("the sun", ["the Sun"])  # articles and case are normalised away on both sides
    assert not contains("Parisian cafes", ["Paris"])  # whole words only
    assert not contains("Shakespeare William", ["William Shakespeare"])  # in order
    assert not contains("", ["Paris"])


def test_shipped_questions_have_enough_for_an_interval(make_task):
    # The same minimum the verdict asks of paired comparisons (harness.stats.MIN_EXAMPLES).
    from harness.stats import MIN_EXAMPLES

    questions = load_probe(load_task(make_task())).questions
    assert len(questions) >= MIN_EXAMPLES
    assert all(gold and all(g.strip() for g in gold) for _, gold in questions)


def test_changed_weights_get_intervals_that_hold_the_delta(make_task, backend):
    """On the shipped probe (40 passages, 40 questions), with the task's seed."""
    changed = perturbed(backend, scale=0.5)
    meter = ForgettingMeter(load_task(make_task()), backend)
    result = meter.delta(changed)
    assert result.delta_loss != 0
    assert result.delta_loss_ci_low < result.delta_loss < result.delta_loss_ci_high
    assert result.delta_qa_contains_ci_low <= result.delta_qa_contains <= result.delta_qa_contains_ci_high
    assert meter.delta(changed) == result  # seeded: the same intervals every time
    other_seed = ForgettingMeter(load_task(make_task(seed=7)), backend).delta(changed)
    assert other_seed.delta_loss == result.delta_loss and other_seed.delta_loss_ci_low != result.delta_loss_ci_low


def test_loss_interval_pairs_passages_and_weighs_them_by_tokens():
    base = Measurement(nll=np.array([2.0, 30.0, 9.0, 60.0]), tokens=np.array([1.0, 10.0, 3.0, 20.0]),
                       answered=np.array([-1.0]))
    assert base.scores.loss == pytest.approx(101 / 34)  # not the mean of the passages' losses (2.75)
    # Every token loses exactly 0.5 nats, on passages of very different losses: only if passages
    # are resampled in pairs is every resample's delta 0.5.
    worse = Measurement(nll=base.nll + 0.5 * base.tokens, tokens=base.tokens, answered=base.answered)
    assert worse.scores.loss - base.scores.loss == pytest.approx(0.5)
    assert loss_delta_ci(base, worse, seed=0) == pytest.approx((0.5, 0.5))
    one = Measurement(nll=base.nll[:1], tokens=base.tokens[:1], answered=base.answered)
    one_worse = Measurement(nll=one.nll + 1.0, tokens=one.tokens, answered=base.answered)
    assert loss_delta_ci(one, one_worse, seed=0) == (1.0, 1.0)  # nothing to resample: the point


QUESTIONS = [("what is the capital of france ?", "paris"), ("what is the capital of italy ?", "rome"),
             ("what is the capital of germany ?", "berlin"), ("what is the capital of spain ?", "madrid"),
             ("what is the capital of portugal ?", "lisbon"), ("which country is paris in ?", "france"),
             ("which country is rome in ?", "italy"), ("which country is berlin in ?", "germany")]


def test_learning_to_answer_one_wrong_word_is_no_gain(make_task, tmp_path):
    """An adapter that taught the model to reply with one short word, a wrong one, must not look
    like it gained knowledge: token F1 of such answers rose, and so did the gold answers'
    log-probabilities, which a model that answers tersely raises for every short answer."""
    import torch

    write_lines(tmp_path / "probe" / "qa.jsonl", [json.dumps({"question": q, "answer": a}) for q, a in QUESTIONS])
    write_lines(tmp_path / "probe" / "text.jsonl", [json.dumps({"text": "the team won the match"}),
                                                    json.dumps({"text": "market shares rose"})])
    task = load_task(make_task(forgetting={"text": "probe/text.jsonl", "questions": "probe/qa.jsonl"}))
    # Weights large enough for a few steps to make the model confident (see build_tiny_model).
    base = load_backend(str(build_tiny_model(tmp_path / "model", initializer_range=0.2)))
    prompts = [question_prompt(base, q) for q, _ in QUESTIONS]
    wrong = base.split_answers(prompts[0], ["sport"])[1][0]
    batch = base.tokenizer.pad({"input_ids": [base.tokenizer(p.text, add_special_tokens=False)["input_ids"] + wrong
                                              for p in prompts]}, return_tensors="pt")
    # Only the answer is learned; prompts are left-padded, so it is the last tokens of every row.
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, -len(wrong):] = batch["input_ids"][:, -len(wrong):]
    model = copy.deepcopy(base.model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    for _ in range(3):
        loss = model(**batch, position_ids=(batch["attention_mask"].cumsum(-1) - 1).clamp(min=0), labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tuned = TransformersBackend(model, base.tokenizer, name="one wrong word")
    assert [g.text for g in tuned.generate(prompts, max_new_tokens=12)] == ["sport"] * len(QUESTIONS)

    # The random base knew none of the answers, so there is nothing to lose either: what must not
    # happen is a gain shown by the interval.
    result = ForgettingMeter(task, base).delta(tuned)
    assert result.adapted.qa_contains == 0.0
    assert result.delta_qa_contains <= 0 and result.delta_qa_contains_ci_low <= 0 <= result.delta_qa_contains_ci_high


def test_max_tokens_cuts_the_probe_texts(make_task, tmp_path, backend):
    write_lines(tmp_path / "text.jsonl", [json.dumps({"text": " ".join(["the match"] * 20)})])
    write_lines(tmp_path / "qa.jsonl", [json.dumps({"question": "q ?", "answer": "a"})])
    task = load_task(make_task(forgetting={"text": "text.jsonl", "questions": "qa.jsonl", "max_tokens": 8}))
    assert ForgettingMeter(task, backend).delta(backend).base.tokens == 8 - 1


def test_each_set_of_weights_is_measured_once(small_probe_task, backend, monkeypatch):
    calls = []
    real = forgetting.measure
    monkeypatch.setattr(forgetting, "measure", lambda b, *a, **k: (calls.append(b.name), real(b, *a, **k))[1])
    meter = ForgettingMeter(load_task(small_probe_task), backend)
    changed = perturbed(backend, name="changed")
    first = meter.delta(changed)
    again = meter.delta(perturbed(backend, name="same change again"))  # equal weights, another object
    meter.delta(backend)
    assert calls == [backend.name, "changed"]
    assert again.delta_loss == first.delta_loss != 0


def test_passages_scored_in_one_batch_keep_their_own_loss(backend):
    # Lengths differ, so the shorter rows are padded: padding must add nothing to any passage.
    texts = ["the match ended level", "shares fell sharply in early trading on the news of the merger",
             "the film opens on friday"]
    batched = backend.text_nll(texts, 64)
    for text, (nll, tokens) in zip(texts, batched):
        ((alone, alone_tokens),) = backend.text_nll([text], 64)
        assert tokens == alone_tokens > 0 and nll == pytest.approx(alone, abs=1e-4)
    assert len({tokens for _, tokens in batched}) > 1
