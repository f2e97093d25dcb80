"""Distillation on a tiny model: a student trained with `teacher:` learns the teacher's answers, not
the gold labels; the teacher's answers are a stored run, made once and reused; bad teachers are
refused in one line before anything is stored."""

from __future__ import annotations

import math
import statistics
from collections import Counter

import pytest

from harness.cli import main
from harness.compare import compare
from harness.errors import HarnessError
from harness.store import Store
from tests.conftest import build_tiny_model, topic_rows, write_jsonl
from tests.test_bad_input import expect_error, run_cli

# As tests/test_lora.py: a random tiny model must move visibly in 30 steps.
LORA = {"max_steps": 30, "eval_steps": 10, "learning_rate": 0.01, "batch_size": 4}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


def labelling_runs(store: Store) -> list[dict]:
    return [r for r in store.runs_with_counts() if r["strategy"].endswith("(labels)")]


def test_student_learns_the_teachers_answers_and_they_are_made_once(make_task, tmp_path):
    # The teacher is the random tiny model prompted: its answers are not the gold labels, which are
    # spread evenly over four topics.
    path = make_task(train=topic_rows(12), eval=topic_rows(4, offset=20),
                     strategies={"zero_shot": {},
                                 "student": {"weights": {"lora": {**LORA, "teacher": "zero_shot"}}},
                                 "student_r4": {"weights": {"lora": {**LORA, "r": 4, "teacher": "zero_shot"}}},
                                 "gold": {"weights": {"lora": LORA}}},
                     decision={"baselines": "none"})
    db = tmp_path / "s.sqlite"
    report = compare(path, store_path=db, progress=False)
    rows = {r.name: r for r in report.strategies}
    store = Store(db)
    (labels,) = labelling_runs(store)  # one labelling run for both students
    answers = {e["example_id"]: e["prediction"] for e in store.examples(labels["id"])}
    assert len(answers) == len(topic_rows(12)) and labels["status"] == "finished"
    teacher_label, teacher_count = Counter(answers.values()).most_common(1)[0]
    assert teacher_count / len(answers) > 0.5, "the prompted random model favours one label"

    def predictions(name):
        return [e["prediction"] for e in store.examples(rows[name].run_id)]

    student = Counter(predictions("student"))
    gold = Counter(predictions("gold"))
    # The student answers as its teacher does far more often than the gold labels' 25% share of
    # that label, and more often than the arm trained on the gold labels.
    assert student[teacher_label] / rows["student"].n_examples >= 0.75
    assert student[teacher_label] > gold[teacher_label]
    assert rows["student"].training.train_examples == rows["gold"].training.train_examples

    # The student's one-time cost adds its teacher's labelling, the labelling run's measured seconds.
    labelled = rows["student"].labelling
    assert labelled.teacher == "zero_shot" and labelled.answers == len(answers) and labelled.seconds > 0
    assert rows["student"].cost.labelling_usd > 0 and rows["gold"].cost.labelling_usd == 0
    assert rows["student"].cost.one_time_s == pytest.approx(rows["student"].training.wall_s + labelled.seconds)

    # The verdict holds each student against its teacher and against the arm trained on gold labels.
    found = {x.student: x for x in report.recommendation.findings if x.type == "distillation"}
    assert set(found) == {"student", "student_r4"}
    assert found["student"].teacher == "zero_shot" and found["student"].gold_arm == "gold"
    assert found["student"].estimate.n == rows["student"].n_examples
    assert any(r.startswith("distillation: student, trained on zero_shot's answers")
               for r in report.recommendation.reasons)

    # `harness validate` finds the students' runs and the labelling stored, keyed as compare keys them.
    from harness.validate import validate

    lines = validate(path, store_path=db).lines()
    assert any(line.split()[:2] == ["student", "lora"] and "stored (run" in line for line in lines), lines
    assert f"  zero_shot labels {len(answers)} inputs for its students: stored" in lines

    # A rerun reuses every run, the teacher's answers included; a student named alone is run with
    # its teacher.
    again = compare(path, store_path=db, progress=False)
    assert all(r.reused for r in again.strategies)
    alone = compare(path, strategies=["student"], store_path=db, progress=False)
    assert [r.name for r in alone.strategies] == ["student", "zero_shot"] and all(r.reused for r in alone.strategies)
    assert len(labelling_runs(Store(db))) == 1


def test_teacher_must_be_an_arm(make_task, capsys, tmp_path):
    path = make_task(strategies={"zero_shot": {}, "s": {"weights": {"lora": {"teacher": "nope"}}}})
    expect_error(capsys, tmp_path, path, "strategies.s.weights.lora.teacher", "unknown arm 'nope'")


def test_teacher_cycle_is_refused(make_task, capsys, tmp_path):
    path = make_task(strategies={"a": {"weights": {"lora": {"teacher": "b"}}},
                                 "b": {"weights": {"lora": {"teacher": "a"}}}})
    expect_error(capsys, tmp_path, path, "strategies.a.weights.lora.teacher", "a cycle: a <- b <- a")


def test_a_teacher_teaches_only_methods_that_train_on_labels(make_task, capsys, tmp_path):
    path = make_task(strategies={"zero_shot": {}, "s": {"weights": {"dpo": {"teacher": "zero_shot"}}}})
    expect_error(capsys, tmp_path, path, "strategies.s.weights.dpo.teacher", "dpo does not train on labels")


def unlabelled(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "label"} for row in rows]


def test_a_train_split_without_labels_is_labelled_by_the_teacher(make_task, tmp_path):
    path = make_task(train=unlabelled(topic_rows(8)), eval=topic_rows(4, offset=20),
                     strategies={"zero_shot": {}, "student": {"weights": {"lora": {**LORA, "teacher": "zero_shot"}}}},
                     decision={"baselines": "none"})
    db = tmp_path / "s.sqlite"
    report = compare(path, store_path=db, progress=False)
    (labels,) = labelling_runs(Store(db))
    answered = Store(db).examples(labels["id"])
    assert {e["example_id"] for e in answered} == {r["id"] for r in topic_rows(8)}
    # Nothing to score an input without a label against: no score is stored for it.
    assert all(e["scores"] == {} and e["target"] == "" for e in answered)
    student = next(r for r in report.strategies if r.name == "student")
    assert student.labelling.answers == student.labelling.kept == len(answered) and student.labelling.dropped == {}
    assert student.training.train_examples + student.training.validation_examples == len(answered)


def test_unlabeled_inputs_are_the_students_and_train_keeps_its_labels(make_task, tmp_path):
    # A few labelled examples (the teacher's demonstrations, the gold arm's training) and a stream of
    # inputs without labels: the teacher answers the stream only, and the student learns from that.
    more = unlabelled(topic_rows(4, offset=40))
    write_jsonl(tmp_path / "data" / "more.jsonl", more)
    path = make_task(train=topic_rows(4), eval=topic_rows(4, offset=20),
                     data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "unlabeled": "data/more.jsonl"},
                     strategies={"few_shot": {"k": 3},
                                 "student": {"weights": {"lora": {**LORA, "teacher": "few_shot"}}},
                                 "gold": {"weights": {"lora": LORA}}},
                     decision={"baselines": "none"})
    db = tmp_path / "s.sqlite"
    report = compare(path, store_path=db, progress=False)
    (labels,) = labelling_runs(Store(db))
    assert {e["example_id"] for e in Store(db).examples(labels["id"])} == {r["id"] for r in more}
    rows = {r.name: r for r in report.strategies}
    assert rows["student"].labelling.kept == len(more)
    assert rows["student"].training.train_examples + rows["student"].training.validation_examples == len(more)
    assert rows["gold"].training.train_examples + rows["gold"].training.validation_examples == len(topic_rows(4))


def test_an_unlabelled_train_split_refuses_arms_that_need_its_labels(make_task, capsys, tmp_path):
    train = unlabelled(topic_rows(8))
    gold = make_task(train=train, strategies={"zero_shot": {}, "gold": {"weights": {"lora": LORA}}})
    expect_error(capsys, tmp_path, gold, "strategies.gold.weights.lora", "has no 'label' column", "teacher")
    demos = make_task(train=train, strategies={"zero_shot": {}, "few": {"demos": {"k": 2}}})
    expect_error(capsys, tmp_path, demos, "strategies.few.demos", "has no 'label' column")
    # Partly labelled is a broken file, not an unlabelled one.
    partly = make_task(train=topic_rows(4) + train)
    expect_error(capsys, tmp_path, partly, "train.jsonl: row 13", "missing or empty field 'label'")


def test_unlabeled_inputs_need_an_arm_with_a_teacher(make_task, capsys, tmp_path):
    write_jsonl(tmp_path / "data" / "more.jsonl", unlabelled(topic_rows(2, offset=40)))
    path = make_task(data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "unlabeled": "data/more.jsonl"},
                     strategies={"zero_shot": {}, "gold": {"weights": {"lora": LORA}}})
    expect_error(capsys, tmp_path, path, "data.unlabeled", "no arm of the task has one")


def test_an_eval_input_among_the_unlabeled_ones_is_leakage(make_task, capsys, tmp_path):
    evaluation = topic_rows(4, offset=20)
    write_jsonl(tmp_path / "data" / "more.jsonl", [{"id": "u1", "text": evaluation[0]["text"]}])
    path = make_task(eval=evaluation,
                     data={"train": "data/train.jsonl", "eval": "data/eval.jsonl", "unlabeled": "data/more.jsonl"},
                     strategies={"zero_shot": {}, "s": {"weights": {"lora": {**LORA, "teacher": "zero_shot"}}}})
    expect_error(capsys, tmp_path, path, "data.eval", "also appear in the unlabeled split")


def test_min_confidence_keeps_the_answers_the_teacher_is_sure_of(make_task, tmp_path):
    def task(**student):
        return make_task(train=topic_rows(12), eval=topic_rows(4, offset=20),
                         strategies={"zero_shot": {}, "student": {"weights": {"lora": {**LORA, "teacher": "zero_shot",
                                                                                      **student}}}},
                         decision={"baselines": "none"})

    def probability(e):
        scores = e["extra"]["logprobs"]
        return math.exp(scores[e["prediction"]]) / sum(math.exp(v) for v in scores.values())

    db = tmp_path / "s.sqlite"
    compare(task(), store_path=db, progress=False)
    (labels,) = labelling_runs(Store(db))
    answers = Store(db).examples(labels["id"])
    # The bar at the teacher's median confidence keeps about half of its answers, whatever the random model.
    bar = statistics.median(probability(e) for e in answers)
    sure = [e["example_id"] for e in answers if probability(e) >= bar]
    assert 8 <= len(sure) < len(answers)

    report = compare(task(min_confidence=bar), store_path=db, progress=False)
    assert len(labelling_runs(Store(db))) == 1, "the teacher's answers are reused, then filtered"
    row = next(r for r in report.strategies if r.name == "student")
    assert not row.reused and row.labelling.kept == len(sure)
    assert row.labelling.dropped == {"low_confidence": len(answers) - len(sure)}
    assert row.training.train_examples + row.training.validation_examples == len(sure)
    (found,) = [x for x in report.recommendation.findings if x.type == "distillation"]
    assert (found.answers, found.kept) == (len(answers), len(sure))
    assert any(f"({len(sure)} of {len(answers)} kept; dropped: {len(answers) - len(sure)} below min_confidence)"
               in r for r in report.recommendation.reasons)

    # A bar so high that too few answers are left to train on: the error says that is the teacher's doing.
    top = sorted(probability(e) for e in answers)[-5]
    with pytest.raises(HarnessError, match=r"only \d+ training examples .*; 5 of zero_shot's 36 answers are "
                                           r"trained on \(dropped: \{'low_confidence': 31\}\)"):
        compare(task(min_confidence=top), store_path=db, progress=False)

    # --force labels the inputs again, once, for every student of the teacher.
    compare(task(), store_path=db, progress=False, force=True)
    (again,) = labelling_runs(Store(db))
    assert again["id"] != labels["id"] and again["status"] == "finished"


def test_min_confidence_needs_a_teacher_that_ranks_the_labels(make_task, capsys, tmp_path):
    path = make_task(strategies={"gen": {"prompt": {"scoring": "generate"}},
                                 "s": {"weights": {"lora": {**LORA, "teacher": "gen", "min_confidence": 0.5}}}})
    expect_error(capsys, tmp_path, path, "strategies.s.weights.lora.min_confidence", "gen generates its answers")
    alone = make_task(strategies={"s": {"weights": {"lora": {**LORA, "min_confidence": 0.5}}}})
    expect_error(capsys, tmp_path, alone, "strategies.s.weights.lora", "set teacher")


def test_a_teacher_with_no_answer_to_train_on_is_one_line(make_task, capsys, tmp_path):
    # The random tiny model, asked to generate, never says a topic's name: nothing is left to learn.
    path = make_task(train=topic_rows(12), eval=topic_rows(2, offset=20),
                     strategies={"gen": {"prompt": {"scoring": "generate"}},
                                 "s": {"weights": {"lora": {**LORA, "teacher": "gen"}}}},
                     limits={"batch_size": 4, "max_new_tokens": 3}, decision={"baselines": "none"})
    rc, err, store = run_cli(capsys, tmp_path, path)
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "strategies.s.weights.lora" in err and "none of gen's 36 answers" in err and "'no_label': 36" in err
    # The teacher's answers are kept: a rerun with another teacher setting starts from them.
    assert [r["status"] for r in labelling_runs(Store(store))] == ["finished"]


def stored(answer: str, **extra) -> dict:
    return {"example_id": answer or "empty", "prediction": answer, "extra": extra}


def test_teacher_labels_drop_what_teaches_nothing(make_task):
    from harness.distill import teacher_labels
    from harness.task import load_task

    cfg = load_task(make_task()).config
    kept, dropped = teacher_labels(cfg, [stored("sport"), stored(" "), stored("sports news", unmatched=True),
                                         stored("tech", logprobs={"sport": -3.0, "business": -3.0, "tech": -0.1})],
                                   None)
    assert kept == {"sport": "sport", "tech": "tech"} and dropped == {"empty": 1, "no_label": 1}
    sure, unsure = teacher_labels(cfg, [stored("tech", logprobs={"sport": -3.0, "business": -3.0, "tech": -0.1}),
                                        stored("sport", logprobs={"sport": -1.0, "business": -1.1, "tech": -1.2},
                                               calibrated={"sport": -0.2, "business": -3.0, "tech": -3.0})], 0.8)
    # The calibrated ranking, when the teacher is calibrated, is the one its answer came from.
    assert sure == {"tech": "tech", "sport": "sport"} and unsure == {}
    _, low = teacher_labels(cfg, [stored("sport", logprobs={"sport": -1.0, "business": -1.1, "tech": -1.2})], 0.8)
    assert low == {"low_confidence": 1}


def test_a_structured_teachers_answers_outside_the_schema_are_dropped(make_task):
    from harness.distill import teacher_labels
    from harness.task import load_task

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    cfg = load_task(make_task(type="structured", labels=None, output={"schema": schema}, metrics=None,
                              strategies={"zero_shot": {}})).config
    kept, dropped = teacher_labels(cfg, [stored('{"n": 3}'), stored('{"n": "3"}'), stored("three")], None)
    assert kept == {'{"n": 3}': '{"n": 3}'} and dropped == {"no_label": 2}


def test_a_student_learns_from_its_teacher_when_every_gold_label_is_wrong(make_task, tmp_path):
    # The train split's labels all say 'tech'; the teacher is an adapter trained elsewhere on right
    # labels, so it is far better than chance. The student, trained on its answers, must be too,
    # while the arm trained on the gold labels answers 'tech'.
    model = build_tiny_model(tmp_path / "model", seed=1, initializer_range=0.5)
    right = make_task(train=topic_rows(12), eval=topic_rows(4, offset=20), model=str(model),
                      strategies={"lora": {**LORA, "max_steps": 60}})
    adapter = tmp_path / "teacher_adapter"
    assert main(["train", str(right), "--output", str(adapter), "--no-progress"]) == 0
    wrong = [{**row, "label": "tech"} for row in topic_rows(12)]
    path = make_task(train=wrong, eval=topic_rows(4, offset=20), model=str(model),
                     strategies={"teacher": {"weights": {"checkpoint": {"path": str(adapter)}}},
                                 "student": {"weights": {"lora": {**LORA, "max_steps": 60, "teacher": "teacher"}}},
                                 "gold": {"weights": {"lora": LORA}}},
                     decision={"baselines": "none"})
    rows = {r.name: r for r in compare(path, store_path=tmp_path / "s.sqlite", progress=False).strategies}
    chance = 1 / len(topic_rows(1))
    assert rows["teacher"].quality.value >= 0.75, "the test needs a teacher far better than chance"
    assert rows["gold"].quality.value <= chance + 0.01, "trained on 'tech' alone, it answers 'tech'"
    # Well above the wrong label's share (a third of the eval examples); 0.75 when this was written.
    assert rows["student"].quality.value >= 0.6


def test_a_students_learning_curve_counts_its_teachers_answers(make_task, tmp_path):
    path = make_task(train=topic_rows(12), eval=topic_rows(2, offset=20),
                     strategies={"zero_shot": {}, "few_shot": {"k": 3},
                                 "student": {"weights": {"lora": {**LORA, "teacher": "zero_shot"}}}},
                     learning_curves=[{"strategy": "student", "param": "weights.lora.train_fraction",
                                       "values": [0.5, 1.0]},
                                      {"strategy": "few_shot", "param": "k", "values": [0, 3]}],
                     decision={"baselines": "none"})
    report = compare(path, store_path=tmp_path / "s.sqlite", progress=False)
    student, few = report.learning_curves
    assert student.labels_by == "zero_shot" and few.labels_by is None
    # The points count the teacher's answers trained on (a held-out share of them validates).
    assert [p.labelled_examples for p in student.points] == [16, 33]
    # Not the gold labels' question (when fine-tuning overtakes in-context learning): listed as it is.
    assert not [x for x in report.recommendation.findings if x.type == "overtake"]
    (listed,) = [x for x in report.recommendation.findings if x.type == "curve" and x.labels_by]
    assert listed.strategy == "student"
    assert any(r.startswith("learning curve student, on zero_shot's answers: 16 answers ")
               for r in report.recommendation.reasons)
    assert student.label() == "student (weights.lora.train_fraction, on zero_shot's answers)"
