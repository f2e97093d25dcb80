"""The few tests that need real behaviour: the default model, converted from its shipped GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends.local import BUILTIN, resolve_model
from harness.compare import compare
from harness.registry import load_backend

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
    assert report.strategies[0].quality.value > 0.25


def test_demonstrations_teach_the_answer_format(tmp_path):
    # Zero-shot, the model answers in sentences ("The capital of Aruba is ..."); four solved
    # examples teach it to reply with the name alone, which exact match rewards.
    report = compare(TASKS / "countries.yaml", limit=30, store_path=tmp_path / "s.sqlite", progress=False)
    zero, few = (s.value("exact_match") for s in report.strategies)
    out_zero, out_few = (s.tokens.output_mean for s in report.strategies)
    assert few > zero
    assert out_few < out_zero / 1.5


@pytest.fixture(scope="module")
def bbc_lora(tmp_path_factory):
    """The shipped default task's LoRA (its 60-step budget, on shorter articles), trained once in a
    private adapter cache (so it is trained here, not found from an earlier run) and compared with
    zero-shot on a 60-example slice. The converted base model is shared."""
    import yaml

    from harness.backends.local import cache_dir

    root = tmp_path_factory.mktemp("bbc_lora")
    (root / "cache").mkdir()
    (root / "cache" / "models").symlink_to(cache_dir() / "models")
    task = yaml.safe_load((TASKS / "bbc_news.yaml").read_text())
    for split in ("train", "eval"):
        task["data"][split] = str((TASKS / task["data"][split]).resolve())
    # 60 steps on the first 48 tokens of each article (the shipped task trains 30 on 128): about as
    # many training tokens as the shipped adapter, and a working adapter told from a broken one.
    task["strategies"] = {"zero_shot": {}, "lora": {**task["strategies"]["lora"], "max_steps": 60}}
    task["prompt"]["max_input_tokens"] = 48
    (root / "bbc_lora.yaml").write_text(yaml.safe_dump(task, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(root / "cache"))
        report = compare(root / "bbc_lora.yaml", limit=BBC_SLICE, store_path=root / "s.sqlite", progress=False)
    return root, {s.name: s for s in report.strategies}


BBC_SLICE = 60


# Training takes ~7 minutes of this test's time on 2 cores; the default limit is for hung tests.
@pytest.mark.timeout(1800)
def test_lora_beats_zero_shot_on_bbc_topics(bbc_lora):
    _, rows = bbc_lora
    zero, lora = rows["zero_shot"].quality, rows["lora"].quality
    training = rows["lora"].training
    print(f"zero-shot {zero}, lora {lora}, forgetting {rows['lora'].forgetting}, training {training.wall_s:.0f} s")
    assert training.final_loss < training.first_loss
    assert lora.ci_low > zero.ci_high, (zero, lora)


@pytest.mark.timeout(1800)
def test_gate_passes_the_default_adapter_and_fails_a_shuffled_label_one(bbc_lora, tmp_path, capsys):
    import random
    import xml.etree.ElementTree as ET

    import yaml

    from harness.cli import main

    root, rows = bbc_lora
    good = Path(rows["lora"].training.adapter_path).parent
    # The shipped task's gate rules, on the prompts the adapter was trained with.
    gate = ["gate", str(root / "bbc_lora.yaml"), "--limit", str(BBC_SLICE),
            "--store", str(tmp_path / "gate.sqlite"), "--no-progress"]

    rc = main([*gate, str(good), "--junit", str(tmp_path / "good.xml")])
    out = capsys.readouterr().out
    print(out)
    assert rc == 0 and "gate passed" in out, out

    # The same articles with their labels shuffled, trained on a third of the budget: a degraded
    # adapter of the kind a broken data pipeline produces.
    task = yaml.safe_load((root / "bbc_lora.yaml").read_text())
    lines = Path(task["data"]["train"]).read_text(encoding="utf-8").splitlines()
    train = [json.loads(line) for line in lines if line.strip()]
    labels = [r["label"] for r in train]
    random.Random(0).shuffle(labels)
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("".join(json.dumps({**r, "label": y}) + "\n" for r, y in zip(train, labels)), encoding="utf-8")
    task["data"]["train"] = str(shuffled)
    task["strategies"]["lora"] = {**task["strategies"]["lora"], "max_steps": 20}
    (tmp_path / "shuffled.yaml").write_text(yaml.safe_dump(task, sort_keys=False))
    assert main(["train", str(tmp_path / "shuffled.yaml"), "--output", str(tmp_path / "bad"), "--no-progress"]) == 0

    rc = main([*gate, str(tmp_path / "bad"), "--baseline-checkpoint", str(good), "--junit", str(tmp_path / "bad.xml")])
    out = capsys.readouterr().out
    print(out)
    assert rc == 1 and "FAIL  max_drop" in out and "shown to lose more than" in out, out
    cases = ET.parse(tmp_path / "bad.xml").getroot().find("testsuite").findall("testcase")
    assert "max_drop" in {c.get("name") for c in cases if c.find("failure") is not None}
