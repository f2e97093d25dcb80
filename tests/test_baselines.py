"""Fair by default: beside an arm that fine-tunes, compare adds the prompting baselines the task file
lacks, runs them like any arm, and the verdict holds fine-tuning against the best arm that does the
task, never against one that answers one thing for every example."""

from __future__ import annotations

import json

import yaml

from harness.armspec import parse_arm
from harness.baselines import fair_baselines
from harness.config import Task
from harness.verdict.judge import answer_spread, degenerate
from tests.conftest import TOPICS, build_tiny_model, topic_rows

# Every chat prompt renders to the same text whatever the question: the prompt fails the model the way
# a chat template that biases one label does, so the chat arms answer one label for every example.
BLIND_CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\nthe<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
QUICK_LORA = {"r": 2, "max_steps": 2, "batch_size": 4, "eval_steps": 1}
# The bare template in raw, with a line that ends where the answer goes.
RAW = {"format": "raw", "template": "{{ text }}\nAnswer:"}


def _config(**overrides) -> Task:
    raw = {"name": "t", "type": "classification", "data": {"train": "a.jsonl", "eval": "b.jsonl"},
           "fields": {"input": "text", "target": "label"}, "prompt": {"template": "{{ text }}"},
           "labels": ["a", "b"], "strategies": {"zero_shot": {}, "lora": {}}, **overrides}
    return Task.model_validate(raw)


def _arms(config: Task):
    return [parse_arm(name, params, config, "t.yaml: strategies") for name, params in config.strategies.items()]


def test_a_task_with_zero_shot_and_lora_gets_a_raw_and_a_calibrated_baseline():
    config = _config()
    added, missing = fair_baselines(config, _arms(config), "t.yaml: strategies")
    assert [(a.name, a.params) for a in added] == [("raw", {"prompt": RAW}),
                                                   ("calibrated", {"prompt": {"calibrate": True}}),
                                                   ("raw_calibrated", {"prompt": {**RAW, "calibrate": True}})]
    assert missing == {}


def test_a_template_that_ends_where_the_answer_goes_is_kept_as_it_is_in_raw():
    config = _config(prompt={"template": "Ticket: {{ text }}\nCategory:"})
    added, _ = fair_baselines(config, _arms(config), "t.yaml: strategies")
    assert [(a.name, a.params) for a in added][0] == ("raw", {"prompt": {"format": "raw"}})


def test_an_arm_the_task_already_has_is_not_added_again_whatever_its_name_and_template():
    config = _config(strategies={"zero_shot": {}, "lora": {}, "plain": {"prompt": {"format": "raw",
                                                                                   "template": "Text: {{ text }}"}}})
    added, _ = fair_baselines(config, _arms(config), "t.yaml: strategies")
    # The raw prompt calibrated is the task file's own raw prompt calibrated.
    assert [(a.name, a.params) for a in added] == [
        ("calibrated", {"prompt": {"calibrate": True}}),
        ("raw_calibrated", {"prompt": {"format": "raw", "template": "Text: {{ text }}", "calibrate": True}})]
    # Demonstrations make another arm, not the zero-shot baseline.
    config = _config(strategies={"lora": {}, "shots": {"demos": {"k": 2}, "prompt": {"calibrate": True}}})
    assert [a.name for a in fair_baselines(config, _arms(config), "t.yaml: strategies")[0]] == [
        "raw", "calibrated", "raw_calibrated"]


def test_no_baseline_is_added_without_an_arm_to_hold_against_it():
    config = _config(strategies={"zero_shot": {}, "few_shot": {}})
    assert fair_baselines(config, _arms(config), "t.yaml: strategies") == ([], {})


def test_turned_off_the_baselines_are_named_not_run():
    config = _config(decision={"baselines": "none"})
    added, missing = fair_baselines(config, _arms(config), "t.yaml: strategies")
    assert added == []
    assert missing == {"raw": {"prompt": RAW}, "calibrated": {"prompt": {"calibrate": True}},
                       "raw_calibrated": {"prompt": {**RAW, "calibrate": True}}}


def test_a_bare_question_gets_the_plain_question_answer_framing():
    config = Task.model_validate({
        "name": "t", "type": "short_answer", "data": {"train": "a.jsonl", "eval": "b.jsonl"},
        "fields": {"input": "question", "target": "answer"}, "prompt": {"template": "{{ question }}"},
        "strategies": {"zero_shot": {}, "lora": {}}})
    added, _ = fair_baselines(config, _arms(config), "t.yaml: strategies")
    assert [(a.name, a.params) for a in added] == [
        ("raw", {"prompt": {"format": "raw", "template": "Question: {{ question }}\nAnswer:"}})]


def test_a_model_given_as_a_mapping_of_options_gets_its_baselines_too():
    model = {"name": "smollm2-135m-instruct", "device": "cpu"}
    config = _config(model=model)
    added, _ = fair_baselines(config, _arms(config), "t.yaml: strategies")
    assert [a.name for a in added] == ["raw", "calibrated", "raw_calibrated"]
    assert all(a.model == config.model for a in added)


def test_an_arm_on_another_model_gets_the_baselines_on_its_own_model():
    config = _config(strategies={"zero_shot": {}, "small": {"model": "other-model", "weights": "lora"}})
    added, _ = fair_baselines(config, _arms(config), "t.yaml: strategies")
    assert [(a.name, a.model) for a in added] == [("raw_other-model", "other-model"),
                                                  ("calibrated_other-model", "other-model"),
                                                  ("raw_calibrated_other-model", "other-model")]


def test_degenerate_needs_one_answer_the_gold_answers_do_not_share():
    assert answer_spread(["Sport ", "sport", "tech"], ["sport", "tech", "tech"]) == ("sport", 2, 1)
    assert degenerate(9, 3, 10) and not degenerate(8, 3, 10)
    # An eval set that is 95% one label: answering it every time is the majority baseline, not a failure.
    assert not degenerate(20, 19, 20)


def _compare(tmp_path, model, decision=None):
    from harness.cli import main

    rows = topic_rows(4, offset=10)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in topic_rows(6)))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {"name": "blind", "type": "classification", "model": str(model),
            "data": {"train": "train.jsonl", "eval": "eval.jsonl"}, "fields": {"id": "id", "input": "text",
                                                                               "target": "label"},
            "prompt": {"template": "article : {{ text }} topic ?"}, "labels": list(TOPICS),
            # Fine-tuned on the plain prompt, which shows it the article.
            "strategies": {"zero_shot": {}, "tuned": {"weights": {"lora": QUICK_LORA}, "prompt": {"format": "raw"}}},
            "limits": {"batch_size": 4},
            "decision": {"min_gain": 0.02, **(decision or {})}}
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task), encoding="utf-8")
    out = tmp_path / "report.json"
    assert main(["compare", str(tmp_path / "task.yaml"), "--store", str(tmp_path / "s.sqlite"), "--json", str(out),
                 "--no-progress"]) == 0
    return json.loads(out.read_text())


def test_a_chat_prompt_that_fails_the_model_gets_a_fair_raw_baseline(tmp_path, capsys):
    from transformers import AutoTokenizer

    model = build_tiny_model(tmp_path / "model", seed=3, initializer_range=0.5)
    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = BLIND_CHAT
    tok.save_pretrained(model)
    report = _compare(tmp_path, model)
    rows = {r["name"]: r for r in report["strategies"]}
    rec = report["recommendation"]
    assert list(rows)[-3:] == ["raw", "calibrated", "raw_calibrated"] and len(rows) == 5
    assert rows["raw"]["added_by_harness"] and rows["calibrated"]["added_by_harness"]
    assert not rows["zero_shot"]["added_by_harness"]
    table = capsys.readouterr().out
    assert table.count("(added)") == 3  # the "made of" cells of the added arms
    # The chat prompt is the same text for every article: one label for all 12.
    assert rows["zero_shot"]["answers"]["count"] == 12
    degenerate_arms = {f["arm"] for f in rec["findings"] if f["type"] == "degenerate"}
    assert "zero_shot" in degenerate_arms and "raw" not in degenerate_arms
    assert {"type": "baselines_added", "arms": ["raw", "calibrated", "raw_calibrated"]} in rec["findings"]
    # Fine-tuning is held against a fair arm: the raw prompt (or its calibrated twin, if that is fair).
    judged = [f for f in rec["findings"] if f["type"] == "judgement"]
    assert judged and {j["against"] for j in judged} <= set(rows) - degenerate_arms
    assert rec["alternative"] not in degenerate_arms
    # Pairs with a degenerate arm are tested as a Holm family of their own: the fair arms' tests, which
    # the verdict reads, are adjusted over the fair pairs alone.
    fair = sorted(set(rows) - degenerate_arms)
    families = {p["holm_over"] for p in report["comparisons"]["pairs"]
                if p["a"] in degenerate_arms or p["b"] in degenerate_arms}
    assert families == {10 - len(fair) * (len(fair) - 1) // 2}  # 5 arms, 10 pairs
    assert {p["holm_over"] for p in report["comparisons"]["pairs"]
            if p["a"] in fair and p["b"] in fair} == {len(fair) * (len(fair) - 1) // 2}


def test_turning_baselines_off_runs_the_task_as_written_and_names_them(tmp_path):
    model = build_tiny_model(tmp_path / "model", seed=3, initializer_range=0.5)
    report = _compare(tmp_path, model, {"baselines": "none"})
    assert sorted(r["name"] for r in report["strategies"]) == ["tuned", "zero_shot"]
    missing = [f for f in report["recommendation"]["findings"] if f["type"] == "missing"]
    raw = {"format": "raw", "template": "article : {{ text }} topic ?\nAnswer:"}
    suggest = {"raw": {"prompt": raw}, "calibrated": {"prompt": {"calibrate": True}},
               "raw_calibrated": {"prompt": {**raw, "calibrate": True}}}
    assert {"type": "missing", "what": "fair_baseline", "arm": None, "suggest": suggest} in missing
    # Each named as a task-file entry to paste: YAML's flow style, the template quoted on one line.
    named = next(m for m in report["recommendation"]["missing"] if m.startswith("fair baseline:"))
    assert named.startswith(
        'fair baseline: `raw: {prompt: {format: raw, template: "article : {{ text }} topic ?\\nAnswer:"}}`')
    assert [yaml.safe_load(f"{{{part}}}") for part in named.split("`")[1::2]] == [{k: v} for k, v in suggest.items()]


def test_a_structured_task_gets_its_prompt_decoded_under_the_schema_unless_it_has_that_arm():
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    config = _config(type="structured", labels=None, output={"schema": schema})
    added, _ = fair_baselines(config, _arms(config), "t.yaml: strategies")
    assert [(a.name, a.params) for a in added] == [("raw", {"prompt": {"format": "raw"}}),
                                                   ("constrained", {"decoding": {"json_schema": True}})]
    assert added[1].decoding is not None and added[1].decoding.json_schema
    # A constrained arm with demonstrations is another arm; one without them is this baseline.
    config = _config(type="structured", labels=None, output={"schema": schema},
                     strategies={"lora": {}, "shots": {"demos": {"k": 2}, "decoding": {"json_schema": True}},
                                 "json": {"decoding": {"json_schema": True}}})
    assert [a.name for a in fair_baselines(config, _arms(config), "t.yaml: strategies")[0]] == ["raw"]
