"""Distillation on a tiny model: a student trained with `teacher:` learns the teacher's answers, not
the gold labels; the teacher's answers are a stored run, made once and reused; bad teachers are
refused in one line before anything is stored."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.compare import compare
from harness.store import Store
from tests.conftest import topic_rows
from tests.test_bad_input import expect_error

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
