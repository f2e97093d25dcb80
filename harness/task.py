"""The task YAML: parsed into typed config (harness/config.py) and validated when loaded, before any
work starts; its arms resolved (harness/armspec.py)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from harness.armspec import SHORTHANDS, ArmSpec, parameters, parse_arm, with_param
from harness.config import LearningCurve, Split, Task, checked_schema
from harness.distill import check_teachers
from harness.errors import HarnessError, first_error


class LoadedTask:
    """A validated task plus where it came from (paths in it are relative to the YAML file)."""

    def __init__(self, config: Task, path: Path, arms: dict[str, ArmSpec],
                 curves: list[tuple[LearningCurve, list[ArmSpec]]]):
        self.config = config
        self.path = path
        self.arms = arms
        # Each learning curve with the arm of every point.
        self.curves = curves

    def for_arm(self, spec: ArmSpec) -> LoadedTask:
        """The task as one arm runs it: its `model`, and its `prompt` settings over the task's."""
        if spec.model == self.config.model and not spec.prompt:
            return self
        prompt = self.config.prompt.model_copy(update=spec.prompt)
        return LoadedTask(self.config.model_copy(update={"model": spec.model, "prompt": prompt}), self.path,
                          self.arms, self.curves)

    def resolve(self, split: Split) -> Split:
        return str((self.path.parent / split).resolve()) if isinstance(split, str) else split


def load_task(path: str | Path, *, limit: int | None = None) -> LoadedTask:
    """Read, parse and validate a task file. Every problem raises HarnessError naming file and field."""
    path = Path(path)
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(where, "task file not found") from None
    except UnicodeDecodeError as e:
        raise HarnessError(where, f"not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        raise HarnessError(where, f"{line}malformed YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise HarnessError(where, "expected a mapping of fields at the top level")
    if limit is not None:
        raw.setdefault("limits", {})
        if isinstance(raw["limits"], dict):
            raw["limits"]["eval_examples"] = limit
    try:
        config = Task.model_validate(raw)
    except ValidationError as e:
        field, msg = first_error(e)
        raise HarnessError(f"{where}: {field or '(top level)'}", msg) from None
    if config.output is not None and config.output.schema_file is not None:
        schema = _schema_file(path.parent / config.output.schema_file, f"{where}: output.schema_file")
        config = config.model_copy(update={"output": config.output.model_copy(update={"schema_": schema})})

    arms = {name: parse_arm(name, params, config, f"{where}: strategies")
            for name, params in config.strategies.items()}
    check_teachers(arms)
    curves = [(curve, _curve_points(curve, config, arms, f"{where}: learning_curves.{i}"))
              for i, curve in enumerate(config.learning_curves)]
    return LoadedTask(config, path, arms, curves)


def _schema_file(path: Path, where: str) -> dict:
    import json

    try:
        return checked_schema(json.loads(path.read_text(encoding="utf-8")))
    except OSError as e:
        raise HarnessError(where, f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:  # JSON that does not parse, or a schema that is not one
        raise HarnessError(where, f"{path}: {str(e).splitlines()[0]}") from None


def _curve_points(curve: LearningCurve, config: Task, arms: dict[str, ArmSpec], where: str) -> list[ArmSpec]:
    """One arm per value: the task's arm (or a shorthand with its defaults), with the curve's
    parameter set."""
    name = curve.strategy
    if name not in arms and name not in SHORTHANDS:
        raise HarnessError(f"{where}.strategy", f"unknown arm '{name}'; the task's arms: {', '.join(arms)} "
                                                f"(or a shorthand: {', '.join(SHORTHANDS)})")
    arm = arms.get(name) or parse_arm(name, {}, config, f"{where}.strategy")
    names = parameters(arm)
    if curve.param not in names:
        raise HarnessError(f"{where}.param", f"{name} has no parameter '{curve.param}'; its parameters: "
                                             f"{', '.join(names) or 'none'}")
    points = []
    for j, value in enumerate(curve.values):
        try:
            # Named by the curve's value, so a later error of the point's components (an embedder that
            # cannot load) names the file and the curve too.
            points.append(parse_arm(name, with_param(arm.params, curve.param, value), config,
                                    f"{where}.values.{j}"))
        except HarnessError as e:
            raise HarnessError(f"{where}.values.{j}", e.message) from None
    return points
