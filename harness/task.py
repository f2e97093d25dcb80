"""The task YAML: parsed into typed config and validated when loaded, before any work starts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, ValidationError,
                      field_validator, model_validator)

from harness.armspec import SHORTHANDS, ArmSpec, parameters, parse_arm, with_param
from harness.backends import ModelSpec
from harness.errors import HarnessError, first_error
from harness.metrics import DEFAULT_METRICS, LENIENT
from harness.prompting import PromptConfig

DEFAULT_MODEL = "smollm2-135m-instruct"
TaskType = Literal["classification", "short_answer", "generation"]
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class _Strict(BaseModel):
    # An unknown key is almost always a typo; silently ignoring it would run the wrong experiment.
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSplit(_Strict):
    hub: str = Field(description="dataset name on the Hugging Face hub (needs network)")
    split: str = Field(description="split of that dataset, e.g. 'train' or 'test'")
    config: str | None = Field(None, description="dataset configuration name, if it has several")


Split = str | HubSplit


class DataConfig(_Strict):
    source: str | None = Field(None, description="where the data comes from (provenance, free text)")
    build: str | None = Field(None, description="command that creates the data files, shown when one is missing")
    train: Split = Field(description="the split few-shot examples and fine-tuning draw from")
    eval: Split = Field(description="the split every strategy is scored on")
    validation: Split | None = Field(None, description="optional held-out split for early stopping")

    @field_validator("train", "eval", "validation")
    @classmethod
    def _local_suffix(cls, v: Split | None) -> Split | None:
        if isinstance(v, str) and not v.endswith(DATA_SUFFIXES):
            raise ValueError(f"a local data file must end with one of {', '.join(DATA_SUFFIXES)}")
        return v


class Fields(_Strict):
    id: str | None = Field(None, description="column with a stable example id (row number if absent)")
    input: str = Field(description="column fed to the prompt template")
    target: str = Field(description="column with the gold answer")
    references: str | None = Field(None, description="column with a list of other accepted answers (aliases); "
                                                     "every metric scores the best of the target and these")


DEFAULT_BATCH_SIZE = 8


class Limits(_Strict):
    eval_examples: PositiveInt | None = Field(None, description="score a seeded sample of this many eval examples")
    batch_size: PositiveInt | Literal["auto"] = Field(
        DEFAULT_BATCH_SIZE, description="examples per forward pass; auto: the largest that fits the GPU, found "
                                        "once per model and remembered (on CPU, 8)")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _size_or_auto(cls, v):
        # One message for the two forms, rather than one per branch of the union.
        if v != "auto" and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError("expected a number of examples greater than 0, or auto")
        return v
    max_new_tokens: PositiveInt = Field(32, description="generation budget for generative task types")


class ForgettingConfig(_Strict):
    text: str | None = Field(None, description="JSONL of general text ({'text': ...}) outside the task's domain; "
                                                "default: the shipped probe (element encyclopaedia prose)")
    questions: str | None = Field(None, description="JSONL of general questions ({'question', 'answer'}); "
                                                     "default: the shipped 24 general-knowledge questions")
    max_tokens: PositiveInt = Field(128, description="each probe text is cut to this many tokens")


class CostConfig(_Strict):
    serving: Literal["self_hosted", "api"] = Field(
        "self_hosted", description="price requests by measured seconds on this machine, or by tokens at API prices")
    # About an on-demand 2-vCPU cloud VM, the kind of machine the shipped figures are measured on.
    hardware_usd_per_hour: NonNegativeFloat = Field(
        0.10, description="price per hour of the machine the runs are measured on (training, self-hosted serving)")
    api_usd_per_mtok_input: NonNegativeFloat | None = Field(
        None, description="API price per million prompt tokens (required when serving is 'api')")
    api_usd_per_mtok_output: NonNegativeFloat | None = Field(
        None, description="API price per million output tokens (required when serving is 'api')")
    api_usd_per_mtok_cached_input: NonNegativeFloat | None = Field(
        None, description="API price per million prompt tokens served from the provider's prompt cache (a "
                          "shared prefix: fixed demonstrations, the system prompt); default: the input price")
    # Object storage list price; an adapter of a few MB costs a fraction of a cent a month.
    storage_usd_per_gb_month: NonNegativeFloat = Field(0.023, description="price of storing adapters, per GB-month")


class DecisionConfig(_Strict):
    metric: str | None = Field(None, description="metric the decision is made on (default: the headline metric)")
    # Two points of accuracy: below that, owning a training pipeline rarely pays for itself.
    min_gain: PositiveFloat = Field(0.02, description="smallest quality gain worth having, in metric units "
                                                      "(0.02 = 2 points of accuracy)")
    # 0.05 nats/token is a 5% rise in perplexity on general text.
    forgetting_budget: NonNegativeFloat = Field(0.05, description="largest acceptable rise in loss on the "
                                                                  "general-text probe, nats per token")
    latency_slo_ms: PositiveFloat | None = Field(None, description="p95 latency ceiling per request in ms "
                                                                   "(default: no ceiling)")
    monthly_requests: PositiveInt = Field(100_000, description="expected requests per month")
    payback_months: PositiveFloat = Field(12, description="months within which a one-time cost must be "
                                                          "paid back by cheaper requests")
    # Below 0.5: the one-sided bounds the verdict and the gate use are at 1 - alpha, and at or above
    # 0.5 a "lower" bound would sit above the estimate.
    alpha: float = Field(0.05, gt=0, lt=0.5, description="significance level of the paired tests (after Holm)")
    power: float = Field(0.8, gt=0, lt=1, description="power used for the smallest detectable effect")


class GateConfig(_Strict):
    """`harness gate` rules; a rule set to null is skipped (and reported as skipped)."""

    metric: str | None = Field(None, description="metric the rules judge (default: the headline metric)")
    min_quality: float | None = Field(None, description="lowest acceptable quality of the checkpoint, in metric "
                                                        "units (0.7 = 70% accuracy)")
    # A non-inferiority margin: the candidate must be shown (one-sided bound at alpha) to lose no
    # more than this. Zero could only be shown by a candidate shown to be better. 5 points can be
    # shown on an ordinary eval set: a candidate as good as its baseline that answers 10-20% of the
    # examples differently is shown within it, with 80% power, on about 250-500 paired examples.
    max_drop: NonNegativeFloat | None = Field(0.05, description="largest acceptable quality drop against the "
                                                                "baseline in metric units (0.05 = 5 points); "
                                                                "passes only when the one-sided bound shows the "
                                                                "drop is no larger")
    max_forgetting: NonNegativeFloat | None = Field(None, description="largest acceptable rise in loss on the "
                                                                      "general-text probe against the base "
                                                                      "model, nats per token (default: "
                                                                      "decision.forgetting_budget)")
    max_latency_p95_ms: PositiveFloat | None = Field(None, description="p95 latency ceiling per request in ms")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="significance level of the paired test (below 0.5)")


class LearningCurve(_Strict):
    strategy: str = Field(description="an arm of the task, or a shorthand (few_shot, lora, ...)")
    param: str = Field(description="the parameter varied: a shorthand's own (few_shot's k, lora's train_fraction) "
                                   "or an axis parameter, dotted (demos.k, weights.lora.train_fraction)")
    values: list[Any] = Field(min_length=1, description="one run per value, the other parameters as in strategies")


class Task(_Strict):
    name: str = Field(description="identifier used in the store and reports")
    description: str = ""
    type: TaskType
    model: ModelSpec = Field(DEFAULT_MODEL, description="built-in alias, Hugging Face model id or local folder; a "
                                                         "mapping of a local model's options (name, revision, dtype, "
                                                         "device, quantization, attn_implementation); or a hosted "
                                                         "model: a mapping with backend: openai")
    data: DataConfig
    fields: Fields
    prompt: PromptConfig
    labels: list[str] | None = Field(None, description="the label set (classification only)")
    metrics: list[str] | None = Field(None, description="metric names; the first is the headline metric")
    strategies: dict[str, dict[str, Any]] = Field(description="arm name -> its axes (model, weights, context, "
                                                              "demos), or a shorthand's parameters")
    seed: int = 1234
    limits: Limits = Limits()
    cost: CostConfig = CostConfig()
    decision: DecisionConfig = DecisionConfig()
    learning_curves: list[LearningCurve] = Field([], description="optional quality-vs-labelled-data sweeps "
                                                                 "(each point is a full run)")
    forgetting: ForgettingConfig = ForgettingConfig()
    gate: GateConfig = GateConfig()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("use letters, digits, '_', '-' or '.'")
        return v

    @model_validator(mode="before")
    @classmethod
    def _gate_inherits_the_forgetting_budget(cls, raw):
        # One tolerance for forgetting unless the gate sets its own: the verdict and the gate should
        # not disagree about what "forgot too much" means.
        if not isinstance(raw, dict):
            return raw
        gate, decision = raw.get("gate") or {}, raw.get("decision") or {}
        if isinstance(gate, dict) and isinstance(decision, dict) and "max_forgetting" not in gate:
            budget = decision.get("forgetting_budget", DecisionConfig.model_fields["forgetting_budget"].default)
            raw = {**raw, "gate": {**gate, "max_forgetting": budget}}
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        if self.type == "classification":
            if not self.labels or len(self.labels) < 2:
                raise ValueError("labels: a classification task needs a list of at least two labels")
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("labels: labels must be unique")
        elif self.labels:
            raise ValueError(f"labels: only classification tasks take labels, this task is '{self.type}'")
        if self.prompt.calibrate and self.type != "classification":
            raise ValueError(f"prompt.calibrate: calibration corrects a bias between labels; this task is "
                             f"'{self.type}'")
        if not self.strategies:
            raise ValueError("strategies: name at least one strategy")
        for section in ("decision", "gate"):
            metric = getattr(self, section).metric
            if metric is not None and metric not in self.metric_names:
                raise ValueError(f"{section}.metric: '{metric}' is not one of the task's metrics "
                                 f"({', '.join(self.metric_names)})")
        if self.cost.serving == "api":
            for price in ("api_usd_per_mtok_input", "api_usd_per_mtok_output"):
                if getattr(self.cost, price) is None:
                    raise ValueError(f"cost.{price}: required when cost.serving is 'api'")
        return self

    @property
    def metric_names(self) -> tuple[str, ...]:
        names = tuple(self.metrics) if self.metrics else DEFAULT_METRICS[self.type]
        # A short answer is scored on content as well as form, whatever the task asks for: the verdict
        # tells a win on answer format from a win on knowledge by it.
        if self.type == "short_answer" and LENIENT not in names:
            names += (LENIENT,)
        return names


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

    arms = {name: parse_arm(name, params, config, f"{where}: strategies")
            for name, params in config.strategies.items()}
    curves = [(curve, _curve_points(curve, config, arms, f"{where}: learning_curves.{i}"))
              for i, curve in enumerate(config.learning_curves)]
    return LoadedTask(config, path, arms, curves)


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
