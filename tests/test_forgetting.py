"""harness/forgetting.py: the general-text probe, the weights fingerprint, and the meter that
reports how much an adapted model lost against the base (exactly nothing when weights are equal)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import harness.forgetting as forgetting
from harness.errors import HarnessError
from harness.forgetting import DEFAULT_QUESTIONS, DEFAULT_TEXT, ForgettingMeter, load_probe, weights_fingerprint
from harness.models import TransformersBackend, load_backend
from harness.task import load_task


def get(result, dotted: str):
    """A field of a forgetting result, whether it is a dict or a typed model (`base.loss` reaches in)."""
    for part in dotted.split("."):
        result = result[part] if isinstance(result, dict) else getattr(result, part)
    return result


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
    assert len(probe.questions) == 24 and ("What is the capital of France?", "Paris") in probe.questions


def test_custom_probe_files_relative_to_the_task(small_probe_task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # relative to the YAML, not the working directory
    probe = load_probe(load_task(small_probe_task))
    assert probe.name == "text.jsonl+qa.jsonl"
    assert probe.texts == ["the team won the match", "market shares rose"]  # the blank line is skipped
    assert probe.questions == [("capital of france ?", "paris"), ("capital of italy ?", "rome")]


def test_only_one_custom_file_keeps_the_other_default(make_task, tmp_path):
    write_lines(tmp_path / "qa.jsonl", [json.dumps({"question": "q ?", "answer": "a"})])
    probe = load_probe(load_task(make_task(forgetting={"questions": "qa.jsonl"})))
    assert probe.name == f"{DEFAULT_TEXT.name}+qa.jsonl" and len(probe.texts) == 40 and probe.questions == [("q ?", "a")]


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
        assert get(result, "weights_changed") is False
        assert get(result, "delta_loss") == 0.0 and get(result, "delta_perplexity") == 0.0
        assert get(result, "delta_qa_f1") == 0.0
        assert get(result, "base.loss") == get(result, "adapted.loss") > 0
        assert get(result, "probe") == "text.jsonl+qa.jsonl"


def test_changed_weights_are_measured_against_the_base(small_probe_task, backend):
    import math

    task = load_task(small_probe_task)
    meter = ForgettingMeter(task, backend)
    result = meter.delta(perturbed(backend, scale=0.5))
    assert get(result, "weights_changed") is True
    base, adapted = get(result, "base.loss"), get(result, "adapted.loss")
    assert base > 0 and adapted > 0 and adapted != base
    assert get(result, "delta_loss") == pytest.approx(adapted - base)
    assert get(result, "delta_perplexity") == pytest.approx(math.exp(adapted) - math.exp(base))
    assert get(result, "base.perplexity") == pytest.approx(math.exp(base))
    assert 0 <= get(result, "adapted.qa_f1") <= 1
    # Both texts count, every token after the first is predicted, and the cut is at max_tokens (16).
    assert get(result, "base.tokens") == get(result, "adapted.tokens") == (5 - 1) + (3 - 1)


def test_max_tokens_cuts_the_probe_texts(make_task, tmp_path, backend):
    write_lines(tmp_path / "text.jsonl", [json.dumps({"text": " ".join(["the match"] * 20)})])
    write_lines(tmp_path / "qa.jsonl", [json.dumps({"question": "q ?", "answer": "a"})])
    task = load_task(make_task(forgetting={"text": "text.jsonl", "questions": "qa.jsonl", "max_tokens": 8}))
    assert get(ForgettingMeter(task, backend).delta(backend), "base.tokens") == 8 - 1


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
    assert get(again, "delta_loss") == get(first, "delta_loss") != 0
