"""The task file's typed config: plain pydantic models, checked field by field when a task is loaded.

Types only: this module imports pydantic, the standard library and the metric names, so every
module that reads a config can import it without importing behaviour (harness/task.py loads a file
into these; harness/armspec.py resolves its arms)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Tag,
    field_validator,
    model_validator,
)

from harness.metrics import DEFAULT_METRICS, LENIENT, structured

DEFAULT_MODEL = "smollm2-135m-instruct"
TaskType = Literal["classification", "short_answer", "generation", "structured"]
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class _Strict(BaseModel):
    # An unknown key is almost always a typo; silently ignoring it would run the wrong experiment.
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostedModel(_Strict):
    """`model:` as a mapping with `backend`: a model behind an OpenAI-compatible HTTP API.

    Only what changes the answers is part of a run's identity; the concurrency, timeouts and prices
    are excluded from its dump, so changing them reuses every stored run."""

    backend: Literal["openai"] = Field(description="the protocol: an OpenAI-compatible API")
    name: str = Field(min_length=1, description="the model's id on the server (the requests' `model`)")
    base_url: str = Field(pattern=r"^https?://", description="the API's root, e.g. https://api.openai.com/v1 or "
                                                             "http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                    description="the environment variable holding the API key (the key itself "
                                                "is never written in a task file, a store or a log); none: a "
                                                "server that needs no key")
    logprobs: bool = Field(False, description="the server returns prompt log-probabilities (completions with "
                                              "echo, as vLLM and llama.cpp do): classification ranks labels by "
                                              "log-likelihood; otherwise it generates and matches a label")
    context_length: PositiveInt = Field(8192, description="the model's context, in tokens")
    tokenizer: str | None = Field(None, description="a local tokenizer of the same model (built-in alias, folder "
                                                    "or hub id) to count and cut prompt tokens exactly; none: "
                                                    "about 4 characters per token")
    max_concurrency: PositiveInt = Field(4, exclude=True, description="requests in flight at once")
    timeout_s: PositiveFloat = Field(120, exclude=True, description="seconds before a request is abandoned")
    max_retries: NonNegativeInt = Field(6, exclude=True, description="retries, with backoff, on 429, 5xx and "
                                                                      "timeouts")
    usd_per_mtok_input: NonNegativeFloat = Field(exclude=True, description="price per million prompt tokens")
    usd_per_mtok_output: NonNegativeFloat = Field(exclude=True, description="price per million output tokens")
    usd_per_mtok_cached_input: NonNegativeFloat | None = Field(
        None, exclude=True, description="price per million prompt tokens the server reports as served from its "
                                        "prompt cache; default: the input price")


class Quantization(_Strict):
    bits: Literal[4, 8] = Field(description="bitsandbytes weight quantisation: 4 (NF4 with double quantisation, "
                                            "QLoRA's) or 8 (LLM.int8)")


class LocalModel(_Strict):
    """`model:` as a mapping without `backend`: a transformers model in this process, with the
    options real hardware needs. `model: NAME` is `model: {name: NAME}`, and shares its runs.

    The run key holds the fields that change what the model computes, and only where they differ
    from their defaults, so naming a model either way, or restating a default, reuses its runs. The
    device is not in it: like the machine itself, it changes speed, not the configuration (`dtype:
    auto` follows it, as it always did for a plain name; set `dtype` to pin the precision)."""

    name: str = Field(min_length=1, description="built-in alias, local folder or Hugging Face hub id")
    revision: str | None = Field(None, min_length=1, description="a hub model's branch, tag or commit (pins its "
                                                                 "weights)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights and compute precision; auto: bfloat16 on a GPU that has it (else float16), "
                            "float32 on CPU")
    device: str = Field("auto", exclude=True, description="auto (the GPU if there is one), cpu, cuda or cuda:N")
    quantization: Quantization | None = Field(None, description="load the weights quantised by bitsandbytes "
                                                                "(needs a CUDA GPU); QLoRA is lora on 4 bits")
    attn_implementation: str | None = Field(None, min_length=1, description="transformers' attention kernel: "
                                                                            "eager, sdpa, flash_attention_2, ...; "
                                                                            "default: transformers' choice")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", v):
            raise ValueError("expected auto, cpu, cuda or cuda:N")
        return v

    def __str__(self) -> str:
        return model_label(self)


def _kind(value) -> str:
    if isinstance(value, HostedModel) or (isinstance(value, dict) and "backend" in value):
        return "hosted"
    return "local_options" if isinstance(value, (dict, LocalModel)) else "local"


# A mapping with `backend` is a hosted model, one without a local model's options, and anything else a
# local model's name; so a malformed mapping is reported by its own fields rather than as "not a
# string".
ModelSpec = Annotated[Union[Annotated[str, Tag("local")], Annotated[LocalModel, Tag("local_options")],
                            Annotated[HostedModel, Tag("hosted")]],
                      Discriminator(_kind)]
Model = Union[str, LocalModel, HostedModel]


def model_class(value: dict) -> type[LocalModel] | type[HostedModel]:
    """The model a mapping written in a task file describes (see ModelSpec)."""
    return HostedModel if _kind(value) == "hosted" else LocalModel


def local_options(model: str | LocalModel) -> LocalModel:
    """A local model's options: a plain name is the defaults."""
    return model if isinstance(model, LocalModel) else LocalModel(name=model)


def _changed(model: LocalModel) -> dict:
    """A local model's key fields that differ from their defaults."""
    return {k: v for k, v in model.model_dump(mode="json", exclude={"name"}).items()
            if v != LocalModel.model_fields[k].default}


def model_label(model: Model) -> str:
    """How tables, the store and the verdict name a model: its name, and a local model's revision,
    precision and quantisation when set (two arms may run one model at two precisions)."""
    if isinstance(model, str):
        return model
    if isinstance(model, HostedModel):
        return model.name
    name = model.name + (f"@{model.revision}" if model.revision else "")
    notes = ([f"{model.quantization.bits}-bit"] if model.quantization else []) + (
        [model.dtype] if model.dtype != "auto" else [])
    return name + (f" ({', '.join(notes)})" if notes else "")


def model_name(model: Model) -> str:
    """What the model is loaded by: an alias, folder or hub id (a hosted model's id on its server)."""
    return model if isinstance(model, str) else model.name


def model_key(model: Model) -> str | dict:
    """What identifies a model in a run's key: a local model's name, with the fields that change its
    results where they are not the defaults; a hosted model's answering fields."""
    if isinstance(model, str):
        return model
    if isinstance(model, LocalModel):
        changed = _changed(model)
        return {"name": model.name, **changed} if changed else model.name
    return model.model_dump(mode="json")


class PromptConfig(_Strict):
    system: str | None = Field(None, description="system message (chat); raw: text placed before the prompt")
    template: str = Field(description="Jinja2 template of the user turn; every data column is a variable")
    max_input_tokens: PositiveInt | None = Field(None, description="truncate the input column to this many tokens")
    format: Literal["chat", "raw"] = Field("chat", description="chat: the model's chat template; raw: plain text "
                                                               "scored as lm-evaluation-harness does")
    target_delimiter: str = Field(" ", description="raw: between a prompt and its answer")
    fewshot_delimiter: str = Field("\n\n", description="raw: between demonstrations")
    calibrate: bool = Field(False, description="classification: contextual calibration from content-free inputs")
    scoring: Literal["loglikelihood", "generate"] | None = Field(
        None, description="classification: rank the labels by log-likelihood, or generate an answer and match it "
                          "to a label (an answer matching none is scored wrong); default: log-likelihood when the "
                          "model's backend gives it")
    overflow: Literal["truncate_input", "error"] = Field(
        "truncate_input", description="a prompt longer than the model's context leaves room for: cut its input "
                                      "column to fit (counted in the report), or refuse to run, naming the example")

    @field_validator("template")
    @classmethod
    def _compiles(cls, v: str) -> str:
        import jinja2

        try:
            jinja2.Environment().parse(v)
        except jinja2.TemplateSyntaxError as e:
            raise ValueError(f"template is not valid Jinja2 (line {e.lineno}): {e.message}") from None
        return v

    def training_key(self) -> dict:
        """What fine-tuning prompts depend on: calibration never, the raw delimiters only in raw."""
        out = self.model_dump(include={"system", "template", "max_input_tokens"})
        if self.format == "raw":
            out.update(self.model_dump(include={"format", "target_delimiter", "fewshot_delimiter"}))
        return out

    def calibration_problem(self, task_type: TaskType) -> str | None:
        """Why these settings cannot be calibrated on a task of this type (None: they can). The task's
        prompt and each arm's are checked by this one rule."""
        if self.calibrate and task_type != "classification":
            return f"calibration corrects a bias between labels; this task is '{task_type}'"
        return None


# An arm's `prompt:` axis: any of the task's prompt settings, overridden for that arm.
PROMPT_FIELDS = tuple(PromptConfig.model_fields)


class OutputConfig(_Strict):
    """`output:` of a structured task: the JSON Schema every answer must follow. `schema_file` is read
    when the task is loaded (harness/task.py) into `schema`, so the schema's content, not its path,
    is part of every run's key."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # `schema` is a name pydantic's BaseModel already uses, hence the alias.
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="the JSON Schema, inline")
    # Out of the run key: the schema read from it is there.
    schema_file: str | None = Field(None, min_length=1, exclude=True, description="a JSON file holding the schema, "
                                                                                  "relative to the task file")

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, v: dict | None) -> dict | None:
        return v if v is None else checked_schema(v)

    @model_validator(mode="after")
    def _one_source(self) -> OutputConfig:
        if (self.schema_ is None) == (self.schema_file is None):
            raise ValueError("schema: give the JSON Schema inline (schema) or in a file (schema_file), one of them")
        return self


def checked_schema(schema: Any) -> dict:
    """`schema` if it is a valid JSON Schema for an object, else a ValueError saying why."""
    import jsonschema

    if not isinstance(schema, dict):
        raise ValueError("a JSON Schema is a mapping, e.g. {type: object, properties: {...}}")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(map(str, e.absolute_path))
        raise ValueError(f"not a valid JSON Schema{f' at {where}' if where else ''}: {e.message}") from None
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise ValueError("a structured task's schema describes an object: type: object, with its properties")
    return schema


class DecodingConfig(_Strict):
    """An arm's `decoding:` axis: how its answers are generated."""

    json_schema: bool = Field(False, description="structured tasks: generate under the task's output schema "
                                                 "(constrained decoding), so every answer is schema-valid")


class ComponentConfig(_Strict):
    """The base of every component's (and plugin's) parameters in the task file."""


class TaughtConfig(ComponentConfig):
    """The base of a weights method that trains: what it learns from (harness/distill.py)."""

    teacher: str | None = Field(None, min_length=1, description="an arm of the task whose answers on the train "
                                                                 "inputs are the labels trained on instead of the "
                                                                 "gold ones (distillation); the arm is run like any "
                                                                 "other and its answers stored")
    min_confidence: float | None = Field(None, gt=0, le=1, description="with a teacher that ranks the labels "
                                                                      "(classification scored by log-likelihood): "
                                                                      "train only on its answers given at least "
                                                                      "this probability among the labels")

    @model_validator(mode="after")
    def _confidence_needs_a_teacher(self):
        if self.min_confidence is not None and self.teacher is None:
            raise ValueError("min_confidence filters a teacher's answers; set teacher: ARM too")
        return self


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
    unlabeled: Split | None = Field(None, description="inputs without labels (only the input column, and the id "
                                                      "column if set, are read): a teacher arm labels them for its "
                                                      "students (distillation), instead of the train inputs")

    @field_validator("train", "eval", "validation", "unlabeled")
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
    max_new_tokens: PositiveInt = Field(32, description="generation budget for generative task types")
    stop: list[Annotated[str, Field(min_length=1)]] = Field(
        [], max_length=4, description="generated answers end before the first of these strings (lm-evaluation-"
                                      "harness's until), e.g. ['\\n\\n']; at most 4, as OpenAI's API takes")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _size_or_auto(cls, v):
        # One message for the two forms, rather than one per branch of the union.
        if v != "auto" and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError("expected a number of examples greater than 0, or auto")
        return v


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
    # A baseline weaker than it needs to be makes "fine-tune" the answer by construction
    # (harness/baselines.py).
    baselines: Literal["auto", "none"] = Field(
        "auto", description="auto: beside an arm that fine-tunes, run the fair prompting baselines its model lacks "
                            "(the template in raw format, calibrated); none: run only the task's arms, and the "
                            "verdict names the baselines missing")


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


class MlflowConfig(_Strict):
    tracking_uri: str | None = Field(None, description="MLflow tracking server or store, e.g. http://127.0.0.1:5000 "
                                                        "(default: --mlflow, then $MLFLOW_TRACKING_URI, then ./mlruns)")
    experiment: str | None = Field(None, description="MLflow experiment the runs go in (default: "
                                                     "$MLFLOW_EXPERIMENT_NAME, then the task's name)")


class TrackingConfig(_Strict):
    """Where results are also logged, besides the store. Changes no result: not in any run's key."""

    mlflow: MlflowConfig | None = Field(None, description="log each comparison to MLflow: a parent run, one "
                                                          "nested run per arm (needs the `mlflow` extra)")


class Task(_Strict):
    name: str = Field(description="identifier used in the store and reports")
    description: str = Field("", description="free text about the task (in no run's key)")
    type: TaskType = Field(description="how answers are scored: rank the labels, or generate a short answer or text")
    model: ModelSpec = Field(DEFAULT_MODEL, description="built-in alias, Hugging Face model id or local folder; a "
                                                         "mapping of a local model's options (name, revision, dtype, "
                                                         "device, quantization, attn_implementation); or a hosted "
                                                         "model: a mapping with backend: openai")
    data: DataConfig
    fields: Fields
    prompt: PromptConfig
    labels: list[str] | None = Field(None, description="the label set (classification only)")
    output: OutputConfig | None = Field(None, description="structured only: the JSON Schema of the answers "
                                                          "(schema, or schema_file)")
    metrics: list[str] | None = Field(None, description="metric names; the first is the headline metric")
    strategies: dict[str, dict[str, Any]] = Field(description="arm name -> its axes (model, weights, context, "
                                                              "demos), or a shorthand's parameters")
    seed: int = Field(1234, description="seeds demonstration draws, --limit samples, training and the bootstrap")
    limits: Limits = Limits()
    cost: CostConfig = CostConfig()
    decision: DecisionConfig = DecisionConfig()
    learning_curves: list[LearningCurve] = Field([], description="optional quality-vs-labelled-data sweeps "
                                                                 "(each point is a full run)")
    forgetting: ForgettingConfig = ForgettingConfig()
    gate: GateConfig = GateConfig()
    tracking: TrackingConfig = TrackingConfig()

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
        if self.type == "structured" and self.output is None:
            raise ValueError("output.schema: a structured task needs the JSON Schema of its answers (output: "
                             "{schema: {...}} or {schema_file: path}); none is derived")
        if self.type != "structured" and self.output is not None:
            raise ValueError(f"output: only structured tasks take an output schema, this task is '{self.type}'")
        if self.metrics:
            named = set(self.metrics) - set(structured.NAMES) if self.type == "structured" else set(
                self.metrics) & (set(structured.NAMES) - {"exact_match"})
            if named:
                kind = "a structured task scores JSON objects with" if self.type == "structured" else \
                    "only a structured task (JSON answers) has"
                raise ValueError(f"metrics: {kind} {', '.join(structured.NAMES)}; not {', '.join(sorted(named))}")
        if problem := self.prompt.calibration_problem(self.type):
            raise ValueError(f"prompt.calibrate: {problem}")
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
    def answer_schema(self) -> dict | None:
        """A structured task's JSON Schema (its file read by load_task); None for other types."""
        return self.output.schema_ if self.output else None

    @property
    def metric_names(self) -> tuple[str, ...]:
        names = tuple(self.metrics) if self.metrics else DEFAULT_METRICS[self.type]
        # A short answer is scored on content as well as form, whatever the task asks for: the verdict
        # tells a win on answer format from a win on knowledge by it.
        if self.type == "short_answer" and LENIENT not in names:
            names += (LENIENT,)
        return names
