"""`harness gate` on a tiny model: a good adapter passes, one trained on shuffled labels fails with
its reasons, a tampered or unsafe checkpoint is an error (exit 2), and the JUnit XML, the GitHub
step summary and the store record say the same thing."""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.store import Store
from tests.conftest import build_tiny_model, topic_rows, write_jsonl

# Enough for the tiny model to learn the three topics (100% here; zero-shot is at chance, 33%).
LORA = {"max_steps": 60, "eval_steps": 20, "learning_rate": 0.02, "batch_size": 4}
# A random model's "general text" loss is meaningless, so forgetting is allowed a wide margin here;
# the real-model gate test judges it at the shipped budget.
RULES = {"min_quality": 0.6, "max_drop": 0.0, "max_forgetting": 10.0}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """The task, plus adapters trained on its true labels and on the same texts with shuffled labels."""
    root = tmp_path_factory.mktemp("gate")
    model = build_tiny_model(root / "model", initializer_range=0.2)
    train = topic_rows(12)
    shuffled = [dict(r) for r in train]
    labels = [r["label"] for r in shuffled]
    random.Random(0).shuffle(labels)
    for row, label in zip(shuffled, labels):
        row["label"] = label
    write_jsonl(root / "data" / "train.jsonl", train)
    write_jsonl(root / "data" / "shuffled.jsonl", shuffled)
    write_jsonl(root / "data" / "eval.jsonl", topic_rows(10, offset=20))
    task = {
        "name": "tiny_topics", "type": "classification", "model": str(model),
        "data": {"train": "data/train.jsonl", "eval": "data/eval.jsonl"},
        "fields": {"id": "id", "input": "text", "target": "label"},
        "prompt": {"system": "answer with one word", "template": "article : {{ text }} topic ?"},
        "labels": ["sport", "business", "tech"],
        "strategies": {"zero_shot": {}, "lora": LORA},
        "limits": {"batch_size": 8},
        "gate": RULES,
    }
    (root / "task.yaml").write_text(yaml.safe_dump(task, sort_keys=False))
    (root / "shuffled.yaml").write_text(yaml.safe_dump({**task, "data": {**task["data"], "train": "data/shuffled.jsonl"}},
                                                       sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(root / "cache"))
        for name in ("task", "shuffled"):
            assert main(["train", str(root / f"{name}.yaml"), "--output", str(root / name), "--no-progress"]) == 0
    return root


def gate(capsys, root: Path, checkpoint: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["gate", str(checkpoint), "--task", str(root / "task.yaml"), "--store", str(root / "s.sqlite"),
               "--no-progress", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_good_adapter_passes_against_the_base_model(adapters, capsys, tmp_path, monkeypatch):
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    rc, out, err = gate(capsys, adapters, adapters / "task", "--junit", str(tmp_path / "junit.xml"))
    assert rc == 0, out + err
    assert "zero-shot" in out.splitlines()[0]  # the default baseline: the base model, prompted
    assert "PASS  min_quality" in out and "PASS  max_drop" in out and "PASS  max_forgetting" in out
    assert "skip  max_latency_p95_ms" in out and "gate passed" in out

    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"min_quality", "max_drop", "max_forgetting", "max_latency_p95_ms"}
    assert suite.get("failures") == "0" and cases["max_latency_p95_ms"].find("skipped") is not None
    assert "Gate passed" in summary.read_text() and "| min_quality | ✅ pass |" in summary.read_text()

    store = Store(adapters / "s.sqlite", readonly=True)
    stored = store.gates()[0]
    candidate = store.run(stored["candidate_run_id"])
    store.close()
    assert stored["passed"] and stored["result"]["candidate"]["checkpoint"]["verified_digests"]
    assert candidate["strategy"] == "checkpoint" and candidate["status"] == "finished"


def test_shuffled_label_adapter_fails_with_its_reasons(adapters, capsys, tmp_path):
    junit = tmp_path / "junit.xml"
    rc, out, err = gate(capsys, adapters, adapters / "shuffled", "--baseline-checkpoint", str(adapters / "task"),
                        "--junit", str(junit))
    assert rc == 1, out + err
    assert "FAIL  min_quality" in out and "FAIL  max_drop" in out, out
    assert "significant drop" in out and "gate FAILED: min_quality, max_drop" in out

    suite = ET.parse(junit).getroot().find("testsuite")
    failed = {c.get("name"): c.find("failure").get("message") for c in suite.iter("testcase")
              if c.find("failure") is not None}
    assert set(failed) == {"min_quality", "max_drop"} and "significant drop" in failed["max_drop"]


def test_a_rerun_reuses_the_candidate_run_and_the_baseline_can_be_a_stored_run(adapters, capsys):
    rc, out, err = gate(capsys, adapters, adapters / "task")
    assert rc == 0, out + err
    store = Store(adapters / "s.sqlite", readonly=True)
    latest, first = store.gates()[0], store.gates()[-1]
    store.close()
    assert latest["result"]["candidate"]["reused"] and latest["candidate_run_id"] == first["candidate_run_id"]

    # Against the good adapter's own run, the shuffled one fails the same way.
    rc, out, _ = gate(capsys, adapters, adapters / "shuffled", "--baseline", str(first["candidate_run_id"]))
    assert rc == 1 and "FAIL  max_drop" in out
    # A flag overrides the task's rule: with no minimum and any drop allowed, only forgetting is judged.
    rc, out, _ = gate(capsys, adapters, adapters / "shuffled", "--min-quality", "0", "--max-drop", "1")
    assert rc == 0 and "gate passed" in out


def test_a_full_model_checkpoint_is_gated_too(adapters, capsys, tmp_path):
    from harness.checkpoints import inspect, load
    from harness.models import load_backend
    from harness.task import load_task

    task = load_task(adapters / "task.yaml")
    base = load_backend(task.config.model, task.path.parent).model
    load(inspect(adapters / "task", task), base).save_pretrained(tmp_path / "full")
    rc, out, err = gate(capsys, adapters, tmp_path / "full")
    assert rc == 0, out + err
    store = Store(adapters / "s.sqlite", readonly=True)
    assert store.gates()[0]["result"]["candidate"]["checkpoint"]["kind"] == "full_model"
    store.close()


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def expect_error(capsys, adapters, checkpoint, *fragments, junit: Path | None = None):
    rc, out, err = gate(capsys, adapters, checkpoint, *(["--junit", str(junit)] if junit else []))
    assert rc == 2 and len(err.strip().splitlines()) == 1, out + err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_a_tampered_adapter_is_an_error(adapters, capsys, tmp_path):
    folder = _copy(adapters / "task", tmp_path / "tampered")
    weights = folder / "adapter" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # one bit pattern in a tensor: still parses, so only the digest can tell
    weights.write_bytes(bytes(data))
    junit = tmp_path / "junit.xml"
    expect_error(capsys, adapters, folder, "adapter_model.safetensors", "differs from the digest", junit=junit)
    case = ET.parse(junit).getroot().find("testsuite").find("testcase")
    assert "differs from the digest" in case.find("error").get("message")


def test_a_truncated_peft_adapter_is_an_error(adapters, capsys, tmp_path):
    # A bare peft adapter has no digests: the safetensors header catches the truncation.
    folder = _copy(adapters / "task" / "adapter", tmp_path / "peft")
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    expect_error(capsys, adapters, folder, "adapter_model.safetensors", "truncated or altered")


def test_a_pickled_checkpoint_is_never_loaded(adapters, capsys, tmp_path):
    folder = _copy(adapters / "task" / "adapter", tmp_path / "pickled")
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_model.bin").write_bytes(b"not to be unpickled")
    expect_error(capsys, adapters, folder, "only safetensors", "adapter_model.bin")


def test_an_adapter_for_another_base_model_is_an_error(adapters, capsys, tmp_path):
    folder = _copy(adapters / "task" / "adapter", tmp_path / "foreign")
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "gpt2"}))
    expect_error(capsys, adapters, folder, "trained on 'gpt2'")


def test_bad_baselines_and_flags_are_errors(adapters, capsys, tmp_path):
    expect_error(capsys, adapters, tmp_path / "missing", "checkpoint folder not found")
    rc, _, err = gate(capsys, adapters, adapters / "task", "--baseline", "9999")
    assert rc == 2 and "no run 9999" in err
    rc, _, err = gate(capsys, adapters, adapters / "task", "--max-drop", "-1")
    assert rc == 2 and "--max-drop: Input should be greater than or equal to 0" in err


def test_the_checkpoint_strategy_in_a_compare_needs_its_path(adapters, capsys):
    rc = main(["compare", str(adapters / "task.yaml"), "--strategies", "checkpoint",
               "--store", str(adapters / "s.sqlite"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "strategies.checkpoint.path: required to run checkpoint" in err, err
