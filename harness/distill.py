"""Distillation: an arm whose weights train on another arm's answers instead of the gold labels
(`weights: {lora: {teacher: ARM}}`, full fine-tuning too).

The teacher's answers on the train inputs are a run like any other (harness/compare.py runs it
through the runner and stores it, a hosted teacher's requests through the response cache); the
student then trains through the usual training path on the train split with each target replaced
by the teacher's answer. This module holds the rules: which arm teaches which, checked when the
task is loaded, and the training data made from the teacher's answers."""

from __future__ import annotations

import dataclasses

from harness.armspec import ArmSpec
from harness.config import TaughtConfig
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


def taught(data: TaskData, answers: dict[str, str], data_hash: str) -> TaskData:
    """The task data a student trains on: the train inputs the teacher answered, each with the
    teacher's answer as its target (an empty answer is dropped: it teaches nothing), and no
    validation split of gold labels (the training holds out some of the teacher's). `data_hash`:
    of the data and the teacher's run, so the student's weights and run are keyed by both."""
    train = [dataclasses.replace(ex, target=answers[ex.id].strip()) for ex in data.train
             if answers.get(ex.id, "").strip()]
    return TaskData(train, data.eval, None, data_hash)
