"""`harness gate`: the rules on hand-built paired scores (a drop too few examples can show is
inconclusive, never a pass), then the command on a tiny model: a good adapter passes, one trained
on shuffled labels fails with its reasons, one no better than chance against zero-shot is
inconclusive (exit 3), a tampered or unsafe checkpoint is an error (exit 2), a bug is one line and a
logged traceback (exit 4), and the JUnit XML, the GitHub step summary and the store record say the
same thing."""

from __future__ import annotations

import json
import math
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.config import GateConfig
from harness.gate import evaluate_rules, verdict
from harness.results import Rule
from harness.stats import paired_difference
from harness.store import Store
from tests.conftest import arm, build_tiny_model, topic_rows, write_jsonl

SEED = 1234


def pairs(both: int, only_baseline: int, only_candidate: int, neither: int) -> tuple[list[int], list[int]]:
    """Paired 0/1 scores (the baseline's, the candidate's) with these counts of each agreement."""
    baseline = [1] * both + [1] * only_baseline + [0] * only_candidate + [0] * neither
    candidate = [1] * both + [0] * only_baseline + [1] * only_candidate + [0] * neither
    return baseline, candidate


def judge(baseline: list[int], candidate: list[int], *, forgetting: tuple[float, float, float] = (0.0, 0.0, 0.0),
          **rules) -> dict[str, Rule]:
    """Every rule's outcome, by name, for the candidate against the baseline on these paired scores;
    `forgetting` is the candidate's rise in general-text loss and its interval."""
    diff = paired_difference(baseline, candidate, seed=SEED, alpha=0.05, power=0.8)
    delta, low, high = forgetting
    row = arm("checkpoint", value=sum(candidate) / len(candidate), n=len(candidate), weights="checkpoint",
              forgetting=delta)
    row.forgetting.delta_loss_ci_low, row.forgetting.delta_loss_ci_high = low, high
    out = evaluate_rules(GateConfig(**rules), "accuracy", row, arm("zero_shot", value=sum(baseline) / len(baseline)),
                         diff, baseline_scores=baseline, candidate_scores=candidate, seed=SEED)
    return {r.name: r for r in out}


# Regressions the old rule ("fail only a significant drop") let through: p above 0.05 each time.
@pytest.mark.parametrize("scores", [
    pairs(0, 5, 0, 0),  # 5 examples, 100% -> 0%: p=0.0625
    pairs(10, 7, 1, 2),  # 20 examples, 85% -> 55%: p=0.070
    pairs(40, 5, 0, 15),  # 60 examples, -8.3 points: p=0.0625
], ids=["5 examples 100% to 0%", "20 examples 85% to 55%", "60 examples -8.3 points"])
def test_a_drop_too_few_examples_can_show_never_passes(scores):
    assert paired_difference(*scores, seed=SEED, alpha=0.05, power=0.8).p_value > 0.05
    rule = judge(*scores)["max_drop"]
    assert rule.outcome in ("fail", "inconclusive"), rule.message


def test_no_drop_on_too_few_examples_is_not_a_pass():
    # Identical on 12 examples: the bootstrap interval is the point 0, which would "show" no loss.
    rule = judge(*pairs(8, 0, 0, 4))["max_drop"]
    assert rule.outcome == "inconclusive" and "at least 30 needed" in rule.message
    assert judge(*pairs(20, 0, 0, 10))["max_drop"].outcome == "pass"


def test_a_baseline_that_answers_one_thing_cannot_pass_a_drop():
    # Against a zero-shot prompt that gives one label for every example under every fair prompt,
    # "no drop" shows nothing, however many examples agree.
    baseline, candidate = pairs(200, 0, 0, 100)
    diff = paired_difference(baseline, candidate, seed=SEED, alpha=0.05, power=0.8)
    row = arm("checkpoint", value=2 / 3, n=300, weights="checkpoint", forgetting=0.0)
    rules = evaluate_rules(GateConfig(), "accuracy", row, arm("zero_shot", value=2 / 3), diff, baseline_scores=baseline,
                           candidate_scores=candidate, seed=SEED, degenerate_baseline=True)
    drop = next(r for r in rules if r.name == "max_drop")
    assert drop.outcome == "inconclusive" and "--baseline" in drop.message
    assert verdict(rules) == "inconclusive"


def test_a_drop_shown_beyond_the_margin_fails():
    rule = judge(*pairs(10, 7, 1, 2))["max_drop"]
    assert rule.outcome == "fail" and rule.threshold == 0.05  # the default margin: 5 points
    assert "one-sided 95% upper bound" in rule.message
    assert "shown to lose more than the 5.0 points allowed" in rule.message


def test_an_undecided_drop_says_how_many_examples_would_decide_it():
    rule = judge(*pairs(40, 5, 0, 15))["max_drop"]
    assert rule.outcome == "inconclusive"
    assert "straddle -5.0" in rule.message
    assert "not shown to lose at most the 5.0 points allowed, nor more" in rule.message
    needed = int(re.search(r"about ([\d,]+) paired examples would decide it", rule.message)[1].replace(",", ""))
    assert 60 < needed < 1000
    # The same proportions on half as many examples are still undecided, on twice as many the drop is shown.
    for factor, outcome in ((0.5, "inconclusive"), (2, "fail")):
        scaled = pairs(*(math.ceil(k * factor * needed / 60) for k in (40, 5, 0, 15)))
        assert judge(*scaled)["max_drop"].outcome == outcome, factor


def test_an_estimate_on_the_margin_cannot_be_decided_by_more_of_the_same():
    rule = judge(*pairs(10, 2, 1, 7))["max_drop"]  # 20 examples, -5.0 points
    assert rule.outcome == "inconclusive" and "the estimate sits on the margin" in rule.message


@pytest.mark.parametrize("scores", [pairs(30, 2, 48, 20), pairs(150, 10, 10, 130)],
                         ids=["much better", "as good on 300 examples"])
def test_a_candidate_shown_within_the_margin_passes(scores):
    rules = judge(*scores)
    assert rules["max_drop"].outcome == "pass", rules["max_drop"].message
    assert "shown to lose at most the 5.0 points allowed" in rules["max_drop"].message
    assert verdict(list(rules.values())) == "pass"


@pytest.mark.parametrize("low, high, outcome", [
    (0.01, 0.05, "pass"),
    (0.05, 0.15, "inconclusive"),  # the estimate is under the limit, the interval is not
    (0.12, 0.20, "fail"),
])
def test_forgetting_is_judged_on_its_interval(low, high, outcome):
    rule = judge(*pairs(30, 2, 48, 20), forgetting=(0.08, low, high), max_forgetting=0.1)["max_forgetting"]
    assert rule.outcome == outcome and rule.observed == 0.08
    assert rule.message.startswith(f"general-text loss 3.000 -> 3.080 nats/token (+0.080 [95% CI {low:+.3f}, "
                                   f"{high:+.3f}]; limit +0.1), general questions answered +0.0 points")


def test_the_gate_fails_on_any_failure_else_is_inconclusive_on_any_undecided_rule():
    rules = {o: Rule(name=o, outcome=o, threshold=None, observed=None, message="") for o in
             ("pass", "fail", "inconclusive", "skipped")}
    assert verdict([rules["pass"], rules["skipped"]]) == "pass"
    assert verdict([rules["pass"], rules["inconclusive"]]) == "inconclusive"
    assert verdict([rules["inconclusive"], rules["fail"], rules["pass"]]) == "fail"


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
    shuffled = {**task, "data": {**task["data"], "train": "data/shuffled.jsonl"}}
    (root / "shuffled.yaml").write_text(yaml.safe_dump(shuffled, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(root / "cache"))
        for name in ("task", "shuffled"):
            assert main(["train", str(root / f"{name}.yaml"), "--output", str(root / name), "--no-progress"]) == 0
    return root


def gate(capsys, root: Path, checkpoint: Path, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["gate", str(root / "task.yaml"), str(checkpoint), "--store", str(root / "s.sqlite"),
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
    assert "shown to lose more than" in out and "gate FAILED: min_quality, max_drop" in out

    suite = ET.parse(junit).getroot().find("testsuite")
    failed = {c.get("name"): c.find("failure").get("message") for c in suite.iter("testcase")
              if c.find("failure") is not None}
    assert set(failed) == {"min_quality", "max_drop"} and "shown to lose more than" in failed["max_drop"]


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


def test_a_chance_level_candidate_is_inconclusive_against_zero_shot(adapters, capsys, tmp_path, monkeypatch):
    # Both answer at about chance, on different examples: 30 of them show neither that the shuffled
    # adapter loses at most 5 points nor that it loses more.
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit = tmp_path / "junit.xml"
    rc, out, err = gate(capsys, adapters, adapters / "shuffled", "--min-quality", "0", "--max-drop", "0.05",
                        "--junit", str(junit))
    assert rc == 3, out + err
    assert "INCONCLUSIVE  max_drop" in out and "paired examples would decide it" in out, out
    assert "gate INCONCLUSIVE: max_drop" in out

    suite = ET.parse(junit).getroot().find("testsuite")
    errors = {c.get("name"): c.find("error") for c in suite.iter("testcase") if c.find("error") is not None}
    assert set(errors) == {"max_drop"} and errors["max_drop"].get("type") == "inconclusive"
    assert "would decide it" in errors["max_drop"].get("message") and suite.get("failures") == "0"
    assert "Gate INCONCLUSIVE" in summary.read_text() and "| max_drop | ❔ inconclusive |" in summary.read_text()

    store = Store(adapters / "s.sqlite", readonly=True)
    stored = store.gates()[0]
    store.close()
    assert not stored["passed"] and stored["result"]["outcome"] == "inconclusive"


def test_a_full_model_checkpoint_is_gated_too(adapters, capsys, tmp_path):
    from harness.checkpoints import inspect, load
    from harness.registry import load_backend
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


def test_an_internal_error_is_one_line_and_a_logged_traceback(adapters, capsys, tmp_path, monkeypatch):
    def broken(session, path):
        raise RuntimeError("the runner broke\nwith a second line of detail")

    monkeypatch.setattr("harness.gate._checkpoint_run", broken)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    junit = tmp_path / "junit.xml"
    rc, out, err = gate(capsys, adapters, adapters / "task", "--junit", str(junit))
    assert rc == 4, out + err  # not 1: a crash is not a regression
    (line,) = err.strip().splitlines()
    found = re.fullmatch(r"error: internal error \(RuntimeError: the runner broke\); traceback in (\S+)", line)
    assert found, line
    log = Path(found[1])
    assert log.parent == tmp_path / "cache" / "logs"
    assert "Traceback" in log.read_text() and "in broken" in log.read_text()
    assert "with a second line of detail" in log.read_text()
    case = ET.parse(junit).getroot().find("testsuite").find("testcase")
    assert "internal error (RuntimeError: the runner broke)" in case.find("error").get("message")
