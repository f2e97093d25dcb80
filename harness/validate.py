"""`harness validate`: check a task file as compare would, and say what compare would do, without
running anything or writing anything.

The checks are compare's own (harness.compare.check_input: the task, its data, metrics, model,
every arm's components and prompts, the MLflow extra), so validate fails exactly where compare
would, with the same line. Then, from a read-only look at the store when there is one: which arms
(fair baselines the harness adds included) are stored already, and an estimate of what the rest
costs: predictions, prompt tokens and training steps."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from harness.compare import check_input, labelling_key, run_key
from harness.distill import teacher_of
from harness.errors import HarnessError
from harness.store import Store


@runtime_checkable
class PlansTraining(Protocol):
    """Weights that train can say how many steps they would take (strategies/finetune.py)."""

    def planned_steps(self, data) -> tuple[int, bool]: ...


@dataclass
class ArmPlan:
    name: str
    made_of: str
    added: bool  # a fair baseline the harness adds
    stored: str | None  # "run 3", "interrupted run 3 (40 of 200 examples)", or None: to run
    prompt_tokens: int | None  # summed over the eval examples, without retrieved passages
    training_steps: int | None  # None: the arm does not train
    trained: bool = False  # its weights are trained already (cached adapter)


@dataclass
class Plan:
    task: str
    task_type: str
    model: str
    eval_examples: int
    train_examples: int
    arms: list[ArmPlan]
    store: str
    store_exists: bool
    max_new_tokens: int
    tracking: str | None
    # A teacher arm labelling its students' inputs: its name, how many inputs, whether that run is stored.
    labelling: list[tuple[str, int, bool]] = field(default_factory=list)

    def lines(self) -> list[str]:
        todo = [a for a in self.arms if a.stored is None or a.stored.startswith("interrupted")]
        out = [f"{self.task} ({self.task_type}): valid; {self.eval_examples} eval and {self.train_examples} train "
               f"examples, model {self.model}",
               f"arms ({'store ' + self.store if self.store_exists else 'no store yet at ' + self.store}):"]
        width = max(len(a.name) for a in self.arms)
        for a in self.arms:
            state = f"stored ({a.stored})" if a.stored and not a.stored.startswith("interrupted") else (
                f"resumes ({a.stored})" if a.stored else "to run")
            extra = []
            if a.training_steps is not None and a.stored is None:
                extra.append("weights trained already" if a.trained else f"trains about {a.training_steps} steps")
            if a.added:
                extra.append("fair baseline the harness adds")
            out.append(f"  {a.name:<{width}}  {a.made_of:<28}  {state}{'; ' + '; '.join(extra) if extra else ''}")
        for teacher, inputs, stored in self.labelling:
            out.append(f"  {teacher} labels {inputs:,} inputs for its students: {'stored' if stored else 'to run'}")
        tokens = sum(a.prompt_tokens or 0 for a in todo)
        steps = sum(a.training_steps or 0 for a in todo if not a.trained)
        labels = sum(inputs for _, inputs, stored in self.labelling if not stored)
        predictions = len(todo) * self.eval_examples + labels
        out.append(f"estimate: {len(todo)} of {len(self.arms)} arms to run, {predictions:,} predictions, "
                   f"about {tokens:,} prompt tokens (without retrieved passages; answers up to "
                   f"{self.max_new_tokens} tokens each when generated), {steps:,} training steps")
        if self.tracking:
            out.append(f"tracking: {self.tracking}")
        return out


def validate(task_path: str | Path, *, strategies: list[str] | None = None, limit: int | None = None,
             store_path: str | Path, mlflow: str | None = None) -> Plan:
    checked = check_input(task_path, strategies=strategies or [], limit=limit, mlflow=mlflow)
    task, data = checked.task, checked.data
    try:
        store = Store(store_path, readonly=True) if Path(store_path).is_file() else None
    except sqlite3.DatabaseError as e:
        raise HarnessError(str(store_path), f"cannot be read as a results store: SQLite says '{e}'") from None
    added = {a.name for a in checked.added}
    arms = []
    try:
        for spec in checked.arms:
            strategy = checked.built[spec.name]
            stored = None
            if store is not None:
                row = store.run_by_key(run_key(task, data, spec, strategy))
                if row is not None and row["status"] == "finished":
                    stored = f"run {row['id']}"
                elif row is not None:
                    stored = f"interrupted run {row['id']}: {len(store.done_ids(row['id']))} of {len(data.eval)} " \
                             f"examples stored"
            weights = getattr(strategy, "parts", {}).get("weights")
            steps, trained = weights.planned_steps(data) if isinstance(weights, PlansTraining) else (None, False)
            tokens = getattr(strategy, "checked_tokens", None)
            arms.append(ArmPlan(spec.name, spec.describe(task.for_arm(spec).config.prompt), spec.name in added,
                                stored, sum(tokens) if tokens else None, steps, trained))
        teachers = dict.fromkeys(t for spec in checked.arms if (t := teacher_of(spec)) is not None)
        labelling = [(t, len(data.teacher_inputs), store is not None and (row := store.run_by_key(
            labelling_key(task, data, task.arms[t]))) is not None and row["status"] == "finished") for t in teachers]
    finally:
        if store is not None:
            store.close()
    s = checked.tracking
    return Plan(task=task.config.name, task_type=task.config.type, model=str(task.config.model
                if isinstance(task.config.model, str) else task.config.model.name),
                eval_examples=len(data.eval), train_examples=len(data.train), arms=arms, store=str(store_path),
                store_exists=store is not None, max_new_tokens=task.config.limits.max_new_tokens,
                tracking=f"MLflow at {s.uri}, experiment '{s.experiment}'" if s else None, labelling=labelling)
