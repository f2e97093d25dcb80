"""DPO on a tiny model: the adapter moves the chosen answers' log-probability above the rejected ones'
on its training pairs; pairs come from columns or from the base model's wrong answers, and are
counted each way; sft_first trains the LoRA SFT adapter first; compare measures its forgetting."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.arm import build
from harness.backends.local import TransformersBackend
from harness.checkpoints import inspect, load
from harness.compare import compare
from harness.data import load_data
from harness.prompting import build_messages, render
from harness.registry import load_backend
from harness.task import load_task
from tests.conftest import build_tiny_model, write_jsonl

CAPITALS = [("france", "paris"), ("germany", "berlin"), ("italy", "rome"), ("spain", "madrid"),
            ("portugal", "lisbon")]
# Fast and visible on a random tiny model.
DPO = {"max_steps": 20, "eval_steps": 10, "learning_rate": 0.02, "batch_size": 4, "beta": 0.5}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def confident_model_dir(tmp_path_factory) -> Path:
    # A wider initialisation, so an adapter can make the model confident (see build_tiny_model).
    return build_tiny_model(tmp_path_factory.mktemp("dpo") / "model", initializer_range=0.5)


def rows(n: int, offset: int = 0, *, rejected: bool = True, ask: str = "what is the capital city of") -> list[dict]:
    out = []
    for i in range(n):
        country, capital = CAPITALS[(offset + i) % len(CAPITALS)]
        wrong = CAPITALS[(offset + i + 1) % len(CAPITALS)][1]
        row = {"id": f"q{offset + i}", "question": f"{ask} {country} {'the ' * i}?",
               "answer": capital}
        out.append({**row, "chosen": capital, "rejected": wrong} if rejected else row)
    return out


def dpo_task(tmp_path, model_dir, *, rejected=True, **dpo) -> Path:
    import yaml

    write_jsonl(tmp_path / "data" / "train.jsonl", rows(16, rejected=rejected))
    write_jsonl(tmp_path / "data" / "eval.jsonl",
                rows(4, offset=100, rejected=False, ask="which city is the capital of"))
    task = {"name": "tiny_capitals", "type": "short_answer", "model": str(model_dir),
            "data": {"train": "data/train.jsonl", "eval": "data/eval.jsonl"},
            "fields": {"id": "id", "input": "question", "target": "answer"},
            "prompt": {"system": "answer with one word", "template": "{{ question }}"},
            "strategies": {"zero_shot": {}, "dpo": {"weights": {"dpo": {**DPO, **dpo}}}},
            "limits": {"batch_size": 4, "max_new_tokens": 3},
            # The task's two arms only: no fair prompting baselines added beside the fine-tuned one.
            "decision": {"baselines": "none"}}
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    return path


def margins(backend, task, data) -> list[float]:
    """log p(chosen) - log p(rejected) of every training pair, as the harness scores answers."""
    out = []
    for ex in data.train:
        prompt = render(task, backend, build_messages(task, ex, backend))
        chosen, rejected = backend.loglikelihood([prompt], [ex.row["chosen"], ex.row["rejected"]])[0].logprobs
        out.append(chosen - rejected)
    return out


def test_dpo_puts_chosen_above_rejected(tmp_path, confident_model_dir):
    task = load_task(dpo_task(tmp_path, confident_model_dir))
    data, base = load_data(task), load_backend(task.config.model)
    before = margins(base, task, data)
    weights = build(task.arms["dpo"], task).parts["weights"]
    manifest_training = weights.train(data, base, None, progress=False)
    adapted = TransformersBackend(load(inspect(weights.output_dir(data), task), base.model), base.tokenizer, "dpo")
    after = margins(adapted, task, data)
    assert after != before
    assert sum(after) / len(after) > sum(before) / len(before)
    assert sum(m > 0 for m in after) >= 0.9 * len(after), after
    pairs = manifest_training.model_extra["preference_pairs"]
    assert pairs["from_columns"] == len([r for r in rows(16)]) - manifest_training.validation_examples
    assert pairs["from_base_answers"] == 0
    # The base model's margins were measured on the base weights, which training left alone.
    assert margins(base, task, data) == before


def test_pairs_built_from_the_base_models_wrong_answers(tmp_path, confident_model_dir):
    task = load_task(dpo_task(tmp_path, confident_model_dir, rejected=False))
    data, base = load_data(task), load_backend(task.config.model)
    weights = build(task.arms["dpo"], task).parts["weights"]
    train_rows, _, facts = weights.rows(data, base)
    counts = facts["preference_pairs"]
    assert counts["from_columns"] == 0
    assert counts["from_base_answers"] == len(train_rows) > 0
    assert counts["from_base_answers"] + counts["base_answered_right"] == len(data.train) - 1  # one held out
    for row in train_rows:
        assert row["chosen"] != row["rejected"] and row["prompt"].endswith("assistant\n")


def test_sft_first_then_dpo_in_compare_with_forgetting(tmp_path, confident_model_dir):
    path = dpo_task(tmp_path, confident_model_dir, sft_first=True, max_steps=10)
    report = compare(path, store_path=tmp_path / "s.sqlite", progress=False)
    zero, dpo = report.strategies
    assert dpo.fine_tuned and dpo.weights == "dpo"
    assert dpo.training.flops == 6 * report.model_params * dpo.training.tokens_seen
    assert dpo.forgetting.weights_changed and zero.forgetting.delta_loss == 0.0
    # The SFT adapter it started from is the lora arm's, cached beside it.
    assert len(list((tmp_path / "cache" / "adapters").glob("tiny_capitals-*/manifest.json"))) == 2
