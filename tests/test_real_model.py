"""The few tests that need real behaviour: the default model, converted from its shipped GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.compare import compare
from harness.models import BUILTIN, load_backend, resolve_model

pytestmark = pytest.mark.integration
TASKS = Path(__file__).parent.parent / "benchmarks" / "tasks"


def test_builtin_model_is_cached_as_safetensors():
    folder = Path(resolve_model("smollm2-135m-instruct"))
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    # The cached config must not claim a GGUF quantization its fp32 weights no longer have.
    assert "quantization_config" not in (folder / "config.json").read_text()
    assert resolve_model("smollm2-135m-instruct") == str(folder)
    assert "smollm2-135m-instruct" in BUILTIN


def test_real_model_knows_capitals():
    backend = load_backend("smollm2-135m-instruct")
    msgs = [{"role": "user", "content": "What is the capital of France? Reply with the name only."}]
    (gen,) = backend.generate([backend.render(msgs)], max_new_tokens=8)
    assert "Paris" in gen.text


def test_zero_shot_topic_accuracy_beats_chance(tmp_path):
    # 5 topics: chance is 20%. Greedy scoring on a fixed seeded sample is deterministic.
    report = compare(TASKS / "bbc_news.yaml", strategies=["zero_shot"], limit=40,
                     store_path=tmp_path / "s.sqlite", progress=False)
    assert report["strategies"][0]["quality"]["value"] > 0.25


def test_demonstrations_teach_the_answer_format(tmp_path):
    # Zero-shot, the model answers in sentences ("The capital of Aruba is ..."); four solved
    # examples teach it to reply with the name alone, which exact match rewards.
    report = compare(TASKS / "countries.yaml", limit=30, store_path=tmp_path / "s.sqlite", progress=False)
    zero, few = (s["metrics"]["exact_match"]["value"] for s in report["strategies"])
    out_zero, out_few = (s["tokens"]["output_mean"] for s in report["strategies"])
    assert few > zero
    assert out_few < out_zero / 1.5


def test_lora_beats_zero_shot_on_bbc_topics(tmp_path, monkeypatch):
    import yaml

    from harness.models import cache_dir

    # A private adapter cache, so the adapter is trained here rather than found from an earlier
    # run; the converted base model is shared.
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "models").symlink_to(cache_dir() / "models")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))

    task = yaml.safe_load((TASKS / "bbc_news.yaml").read_text())
    for split in ("train", "eval"):
        task["data"][split] = str((TASKS / task["data"][split]).resolve())
    # The shipped default task's LoRA budget (60 steps), evaluated on a 60-example slice.
    task["strategies"] = {"zero_shot": {}, "lora": task["strategies"]["lora"]}
    path = tmp_path / "bbc_lora.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))

    report = compare(path, limit=60, store_path=tmp_path / "s.sqlite", progress=False)
    rows = {s["name"]: s for s in report["strategies"]}
    zero, lora = rows["zero_shot"]["quality"], rows["lora"]["quality"]
    training = rows["lora"]["training"]
    assert training["final_loss"] < training["first_loss"]
    assert lora["ci_low"] > zero["ci_high"], (zero, lora)
