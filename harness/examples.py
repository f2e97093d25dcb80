"""The examples a task is made of and the prompt a strategy builds for one: plain dataclasses,
importing the standard library alone (harness/data.py loads them; strategies and the runner use
them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    id: str
    input: str
    target: str
    row: dict[str, Any] = field(repr=False, compare=False)
    aliases: tuple[str, ...] = ()  # other accepted answers (the task's `fields.references` column)
    truncated_to: int | None = None  # tokens of `input` kept, when cut to fit the model's context

    @property
    def references(self) -> tuple[str, ...]:
        """Every accepted answer: metrics score the best of them, as SQuAD does."""
        return (self.target, *self.aliases)


@dataclass
class TaskData:
    train: list[Example]
    eval: list[Example]
    validation: list[Example] | None
    hash: str  # of the raw split contents: results are only comparable on identical data
    # Inputs without labels (data.unlabeled), each with an empty target: a teacher labels them for
    # its students (harness/distill.py).
    unlabeled: list[Example] = field(default_factory=list)
    # False when the train split has no target column: only a teacher's answers can label it.
    train_labelled: bool = True

    @property
    def teacher_inputs(self) -> list[Example]:
        """The inputs a teacher answers for its students: the unlabeled ones when the task has them
        (its train split then keeps its labels for demonstrations and gold-trained arms), else the
        train split's."""
        return self.unlabeled or self.train


@dataclass(frozen=True)
class Prompted:
    """The chat turns sent for one example, and what the model was shown beyond them (e.g. the
    retrieved chunk ids), stored with the example."""

    messages: list[dict[str, str]]
    trace: dict[str, Any] = field(default_factory=dict)
