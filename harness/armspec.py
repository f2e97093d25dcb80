"""Arms: what a task's `strategies:` entries mean, validated when the task is loaded.

An arm is made of independent axes, every one optional:
- `model`: which model answers (default: the task's);
- `weights`: `base`, or one method that changes them: `lora: {...}`, `full: {...}`, `checkpoint: {path}`;
- `context`: `retrieval: {...}`, passages placed before the question;
- `demos`: `{k, select}`, solved train examples shown before the question;
- `prompt`: the task's prompt settings this arm changes (`format: raw`, `calibrate: true`, a template);
- `decoding`: how answers are generated: `{json_schema: true}` under a structured task's schema.

The built-in names are shorthands with flat parameters: `zero_shot: {}`, `few_shot: {k, balanced}`,
`rag: {...retrieval}`, `lora: {...}`, `checkpoint: {path}`. Any other name is an arm defined by its
axes (no axes: the base model prompted zero-shot), or a strategy an installed package registers
(harness/registry.py).

`axes()` is the arm's normal form: two arms that are the same configuration have equal axes, so
the store's run key (built from it) gives them one run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from harness import registry
from harness.config import (
    PROMPT_FIELDS,
    ComponentConfig,
    DecodingConfig,
    HostedModel,
    LocalModel,
    Model,
    PromptConfig,
    Task,
    TaughtConfig,
    model_class,
    model_key,
    model_label,
)
from harness.errors import HarnessError, first_error

AXES = ("model", "weights", "context", "demos", "prompt", "decoding")

M = TypeVar("M", bound=BaseModel)


class ZeroShot(ComponentConfig):
    pass


class FewShot(ComponentConfig):
    k: int = Field(4, ge=0, le=64, description="number of demonstrations (0, for learning curves: the "
                                                "zero-shot prompt)")
    balanced: bool = Field(True, description="classification: spread demos over labels round-robin")


# Shorthand -> (its flat parameters' model, or the axis and method they configure).
SHORTHANDS: dict[str, type[ComponentConfig] | tuple[str, str]] = {
    "zero_shot": ZeroShot,
    "few_shot": FewShot,
    "rag": ("context", "retrieval"),
    "lora": ("weights", "lora"),
    "checkpoint": ("weights", "checkpoint"),
}


@dataclass(frozen=True)
class ComponentSpec:
    """One axis of an arm: its method and validated parameters, and where they are in the task file
    (built into a harness.strategy.Component when the arm runs)."""

    axis: str
    method: str
    config: ComponentConfig
    where: str

    def dump(self) -> dict[str, Any]:
        params = self.config.model_dump(mode="json")
        if isinstance(self.config, TaughtConfig):
            # Distillation's settings came after weights methods' runs were first stored: unset, they
            # stay out of the run key, so those runs are reused.
            params = {k: v for k, v in params.items() if v is not None or k not in TaughtConfig.model_fields}
        return params if self.axis == "demos" else {self.method: params}


@dataclass(frozen=True)
class ArmSpec:
    name: str
    params: dict[str, Any]  # as written, validated: the report row's `params`, what curves vary
    model: Model
    weights: ComponentSpec | None = None
    context: ComponentSpec | None = None
    demos: ComponentSpec | None = None
    plugin: ComponentSpec | None = None
    # The prompt settings that differ from the task's (so restating the task's changes nothing).
    prompt: dict[str, Any] = field(default_factory=dict)
    # None: plain decoding (`decoding: {json_schema: false}` is the same arm).
    decoding: DecodingConfig | None = None

    @property
    def weights_method(self) -> str:
        return self.weights.method if self.weights else "base"

    def components(self) -> list[ComponentSpec]:
        return [c for c in (self.context, self.demos, self.weights) if c is not None]

    def axes(self) -> dict[str, Any]:
        if self.plugin:
            return {"model": model_key(self.model), "plugin": self.plugin.dump()}
        out = {"model": model_key(self.model), "weights": self.weights.dump() if self.weights else "base",
               "context": self.context.dump() if self.context else None,
               "demos": self.demos.dump() if self.demos else None}
        # Only when set: an arm on the task's own prompt, decoded plainly, keeps the run key it always had.
        out = {**out, "prompt": self.prompt} if self.prompt else out
        return {**out, "decoding": self.decoding.model_dump()} if self.decoding else out

    def describe(self, prompt: PromptConfig) -> str:
        """What the arm is made of, in a few words for tables; `prompt` is the arm's prompt settings."""
        if self.plugin:
            return f"plugin {self.plugin.method}"
        parts = [self.weights.method if self.weights else "base"]
        if "model" in self.params:
            parts[0] += f" of {model_label(self.model)}" + (" (hosted)" if isinstance(self.model, HostedModel) else "")
        if self.context:
            parts.append(f"{self.context.method} (top {self.context.config.top_k})")
        if self.demos:
            parts.append(f"{self.demos.config.k} {self.demos.config.select} demos")
        described = " + ".join(parts)
        if prompt.format == "raw":
            described += ", raw prompt"
        if self.decoding:
            described += ", schema-constrained"
        return described + (", calibrated" if prompt.calibrate else "")


def _validate(cls: type[M], params: Any, where: str) -> M:
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise HarnessError(where, "expected a mapping of parameters")
    try:
        return cls.model_validate(params)
    except ValidationError as e:
        field, msg = first_error(e)
        raise HarnessError(f"{where}.{field}" if field else where, msg) from None


def _method(axis: str, entry: Any, where: str) -> ComponentSpec:
    """`{method: {params}}` of one axis (a bare method name means its defaults)."""
    known = registry.METHODS[axis]
    if isinstance(entry, str):
        entry = {entry: {}}
    if not isinstance(entry, dict) or not entry:
        raise HarnessError(where, f"expected one of {', '.join(known)} with its parameters, e.g. "
                                  f"`{axis}: {{{next(iter(known))}: {{...}}}}`")
    if len(entry) > 1:
        raise HarnessError(where, f"one {axis} method per arm, got {' and '.join(entry)}")
    (method, params), = entry.items()
    if method not in known:
        raise HarnessError(f"{where}.{method}", f"unknown {axis} method; known: {', '.join(known)}")
    return ComponentSpec(axis, method, _validate(registry.config_class(axis, method), params, f"{where}.{method}"),
                     f"{where}.{method}")


def _demos(config: ComponentConfig, where: str) -> ComponentSpec | None:
    # No demonstrations is the zero-shot prompt: k=0 is not a different arm (a learning curve's k=0
    # point shares the zero-shot run).
    return ComponentSpec("demos", "demos", config, where) if config.k else None


def _prompt(config: Task, params: Any, where: str) -> dict[str, Any]:
    """The prompt settings an arm changes, validated with the task's as the rest."""
    if not isinstance(params, dict):
        raise HarnessError(where, f"expected a mapping of prompt settings ({', '.join(PROMPT_FIELDS)})")
    merged = _validate(PromptConfig, {**config.prompt.model_dump(), **params}, where)
    if problem := merged.calibration_problem(config.type):
        raise HarnessError(f"{where}.calibrate", problem)
    return {key: getattr(merged, key) for key in params if getattr(merged, key) != getattr(config.prompt, key)}


def _decoding(config: Task, params: Any, where: str) -> DecodingConfig | None:
    decoding = _validate(DecodingConfig, params, where)
    if not decoding.json_schema:
        return None
    if config.type != "structured":
        raise HarnessError(f"{where}.json_schema", f"constrained decoding follows a structured task's output "
                                                   f"schema; this task is '{config.type}'")
    return decoding


def parse_arm(name: str, params: Any, config: Task, where: str) -> ArmSpec:
    """The arm `name` of a task file (`config`: its validated config), or a HarnessError naming the
    file, the arm and the field. `where` is the task file's `strategies` section, e.g.
    "tasks/x.yaml: strategies"."""
    spec = _parse_arm(name, params, config, where)
    if spec.weights is not None and isinstance(spec.model, HostedModel):
        # Checked here, before any backend is loaded or server asked: training and checkpoints need
        # the weights in this process.
        raise HarnessError(f"{where}.{name}.{'model' if 'model' in spec.params else 'weights'}",
                           f"{spec.weights.method} needs the model's weights, and {spec.model.name} is a hosted "
                           f"model whose weights are not here; give this arm a local model")
    return spec


def _parse_arm(name: str, params: Any, config: Task, where: str) -> ArmSpec:
    task_model = config.model
    here = f"{where}.{name}"
    if name in SHORTHANDS:
        shape = SHORTHANDS[name]
        if isinstance(shape, tuple):
            axis, method = shape
            parsed = _validate(registry.config_class(axis, method), params, here)
            return ArmSpec(name, parsed.model_dump(mode="json"), task_model,
                           **{axis: ComponentSpec(axis, method, parsed, here)})
        parsed = _validate(shape, params, here)
        demos = None
        if isinstance(parsed, FewShot):
            demos_config = registry.config_class("demos", "demos")(
                k=parsed.k, select="balanced" if parsed.balanced else "random")
            demos = _demos(demos_config, here)
        return ArmSpec(name, parsed.model_dump(mode="json"), task_model, demos=demos)
    if name in registry.plugins():
        parsed = _validate(registry.config_class("plugin", name), params, here)
        return ArmSpec(name, parsed.model_dump(mode="json"), task_model,
                       plugin=ComponentSpec("plugin", name, parsed, here))

    params = {} if params is None else params
    if not isinstance(params, dict):
        raise HarnessError(here, "expected a mapping of axes (model, weights, context, demos)")
    for key in params:
        if key not in AXES:
            raise HarnessError(f"{here}.{key}", f"unknown axis; an arm is made of {', '.join(AXES)}, or is one of "
                                                f"the shorthands {', '.join(SHORTHANDS)}")
    model = params.get("model") or task_model
    if isinstance(model, dict):
        model = _validate(model_class(model), model, f"{here}.model")
    elif not isinstance(model, (str, LocalModel, HostedModel)):
        raise HarnessError(f"{here}.model", "expected a model name (a built-in alias, hub id or local folder), a "
                                            "local model's options (a mapping with name) or a hosted model (a "
                                            "mapping with backend: openai)")
    weights = params.get("weights", "base")
    parts = {
        "prompt": _prompt(config, params["prompt"], f"{here}.prompt") if params.get("prompt") is not None else {},
        "weights": None if weights in ("base", None) else _method("weights", weights, f"{here}.weights"),
        "context": None if params.get("context") is None else _method("context", params["context"],
                                                                       f"{here}.context"),
        "demos": None if params.get("demos") is None else _demos(
            _validate(registry.config_class("demos", "demos"), params["demos"], f"{here}.demos"), f"{here}.demos"),
        "decoding": None if params.get("decoding") is None else _decoding(config, params["decoding"],
                                                                           f"{here}.decoding"),
    }
    axes = ArmSpec(name, {}, model, **parts).axes()
    # The validated form of what was written, for the report and for learning curves to vary.
    written = {key: axes[key] for key in params if axes.get(key)}
    return ArmSpec(name, written, model, **parts)


def parameters(spec: ArmSpec) -> list[str]:
    """The dotted parameter names a learning curve can vary on this arm."""
    if spec.name in SHORTHANDS or spec.plugin:
        shape = SHORTHANDS.get(spec.name)
        cls = shape if isinstance(shape, type) else type((spec.plugin or spec.weights or spec.context).config)
        return list(cls.model_fields)
    # Demonstrations and prompt settings can be added to any arm; a weights or context method only
    # varies if the arm has it.
    out = [f"demos.{f}" for f in registry.config_class("demos", "demos").model_fields]
    out += [f"prompt.{f}" for f in PROMPT_FIELDS]
    out += [f"decoding.{f}" for f in DecodingConfig.model_fields]
    for c in (spec.weights, spec.context):
        if c is not None:
            out += [f"{c.axis}.{c.method}.{f}" for f in type(c.config).model_fields]
    return out


def with_param(params: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of an arm's parameters with one dotted parameter set."""
    head, _, rest = dotted.partition(".")
    if not rest:
        return {**params, head: value}
    inner = params.get(head)
    return {**params, head: with_param(inner if isinstance(inner, dict) else {}, rest, value)}
