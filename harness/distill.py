"""Distillation: an arm whose weights train on another arm's answers instead of the gold labels
(`weights: {lora: {teacher: ARM}}`, full fine-tuning too).

The teacher's answers on its students' inputs (`data.unlabeled`, else the train split's) are a run
like any other (harness/compare.py runs it through the runner and stores it, a hosted teacher's
requests through the response cache); the student then trains through the usual training path on
those inputs, each with the teacher's answer as its target. This module holds the rules: which arm
teaches which, checked when the task is loaded, and the training data made from the teacher's answers."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

from harness.armspec import ArmSpec
from harness.config import Task, TaughtConfig
from harness.errors import HarnessError
from harness.examples import TaskData

# The weights methods that train on labels; DPO trains on preference pairs.
TAUGHT_METHODS = ("lora", "full")


def teacher_of(spec: ArmSpec) -> str | None:
    """The arm whose answers `spec` trains on (None: the gold labels)."""
    config = spec.weights.config if spec.weights is not None else None
    return config.teacher if isinstance(config, TaughtConfig) else None


def check_teachers(arms: dict[str, ArmSpec]) -> None:
    """Every teacher is another arm of the task, a student learns by a method that trains on labels,
    and no arm learns, through its teachers, from itself."""
    for name, spec in arms.items():
        teacher = teacher_of(spec)
        if teacher is None:
            continue
        where = f"{spec.weights.where}.teacher"
        if spec.weights.method not in TAUGHT_METHODS:
            raise HarnessError(where, f"{spec.weights.method} does not train on labels; a teacher teaches "
                                      f"{' or '.join(TAUGHT_METHODS)}")
        chain = [name]
        while teacher is not None:
            if teacher not in arms:
                raise HarnessError(where, f"unknown arm '{teacher}'; the task's arms: {', '.join(arms)}")
            if teacher in chain:
                raise HarnessError(where, f"a cycle: {' <- '.join([*chain, teacher])}; a teacher cannot learn "
                                          f"from its own student")
            chain.append(teacher)
            teacher = teacher_of(arms[teacher])


def check_labels(path: Path, cfg: Task, arms: dict[str, ArmSpec], specs: list[ArmSpec], data: TaskData) -> None:
    """Inputs without labels serve students only: `data.unlabeled` needs an arm with a teacher, and a
    train split without its target column refuses every arm to run (`specs`) that needs its gold
    labels: weights trained on them, demonstrations showing them."""
    if data.unlabeled and not any(teacher_of(spec) for spec in arms.values()):
        raise HarnessError(f"{path}: data.unlabeled", "inputs without labels are answered by a teacher for its "
                                                      "students, and no arm of the task has one; add "
                                                      "`weights: {lora: {teacher: ARM}}` to an arm or remove it")
    if data.train_labelled:
        return
    for spec in specs:
        gold = spec.weights is not None and isinstance(spec.weights.config, TaughtConfig) and teacher_of(spec) is None
        if gold or spec.demos is not None:
            where, what = ((spec.weights.where, f"{spec.weights.method} trains on") if gold
                           else (spec.demos.where, "demonstrations show"))
            raise HarnessError(where, f"{what} the train split's labels, and data.train has no "
                                      f"'{cfg.fields.target}' column (fields.target); give the arm a teacher "
                                      f"(weights.lora.teacher: ARM), or use a train split with labels")


def check_confidence(spec: ArmSpec, teacher_scoring: str, task_type: str) -> None:
    """`min_confidence` needs a teacher that ranks the labels, so that its answers have a probability."""
    if spec.weights.config.min_confidence is not None and (task_type != "classification"
                                                            or teacher_scoring != "loglikelihood"):
        raise HarnessError(f"{spec.weights.where}.min_confidence",
                           f"needs a teacher that ranks the labels (a classification task scored by "
                           f"log-likelihood), and {teacher_of(spec)} generates its answers; remove it to keep "
                           f"every answer that names a label")


def teacher_labels(cfg: Task, examples: list[dict], min_confidence: float | None) -> tuple[dict[str, str], Counter]:
    """The teacher's answers a student trains on, by input id, from the labelling run's stored
    examples, and how many were dropped, by reason: an empty answer teaches nothing; an answer
    outside the task's answers (a generated one naming no label, or one the output schema refuses)
    teaches a wrong form; and with `min_confidence`, an answer the teacher ranked below that
    probability among the labels is too likely wrong."""
    from harness.metrics import structured

    kept, dropped = {}, Counter()
    for e in examples:
        answer, extra = e["prediction"].strip(), e.get("extra") or {}
        scores = extra.get("calibrated") or extra.get("logprobs")
        if not answer:
            dropped["empty"] += 1
        elif (cfg.labels and answer not in cfg.labels) or (
                cfg.answer_schema is not None and not structured.valid(answer, cfg.answer_schema)):
            dropped["no_label"] += 1
        elif min_confidence is not None and _probability(scores, answer) < min_confidence:
            dropped["low_confidence"] += 1
        else:
            kept[e["example_id"]] = answer
    return kept, dropped


def _probability(scores: dict[str, float] | None, label: str) -> float:
    """The probability of `label` among the labels, from their (log-)scores."""
    top = max(scores.values())
    return math.exp(scores[label] - top) / sum(math.exp(v - top) for v in scores.values())


def taught(data: TaskData, answers: dict[str, str], data_hash: str) -> TaskData:
    """The task data a student trains on: the inputs the teacher answered (`TaskData.teacher_inputs`), each
    with the teacher's answer as its target (`teacher_labels`), and no validation split of gold
    labels (the training holds out some of the teacher's). `data_hash`: of the data and the
    teacher's run, so the student's weights and run are keyed by both."""
    train = [dataclasses.replace(ex, target=answers[ex.id]) for ex in data.teacher_inputs if ex.id in answers]
    return TaskData(train, data.eval, None, data_hash)
