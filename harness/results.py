"""Typed results: one arm's row, the comparison report and a gate result.

compare builds them, cost and decide add to them, report, gate and the dashboard read them, and the
store keeps them as JSON (`model_dump(mode="json")`), which is the documented report shape. Every
part a strategy may or may not produce (training, retrieval, checkpoint, cost) is optional and
typed, so "is this arm fine-tuned?" is a property, not a test for a key."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_serializer, model_validator

from harness.config import CostConfig, DecisionConfig
from harness.verdict.findings import Cause, Finding, VerdictKind


class _Result(BaseModel):
    # Extra keys are kept: a report stored by a newer harness still loads in an older dashboard.
    model_config = ConfigDict(extra="allow")


class Interval(_Result):
    value: float
    ci_low: float
    ci_high: float


class Quality(Interval):
    metric: str


class Latency(_Result):
    p50: float
    p95: float
    mean: float
    # The mean's 95% interval, resampling whole batches (an example's latency is its batch's share).
    mean_ci_low: float | None = None
    mean_ci_high: float | None = None


class Tokens(_Result):
    prompt_mean: float
    output_mean: float
    # Of the prompt tokens, those served from a cache of the arm's shared prefix (computed once, or
    # by the server's prompt cache), priced accordingly (harness/cost.py).
    cached_mean: float = 0.0


class ProbeScores(_Result):
    loss: float  # nats per token on the general-text probe
    perplexity: float
    # Share of the general questions whose generated answer contains the gold answer, in whatever
    # form the model answers, so it measures what the model knows, not the format it answers in.
    qa_contains: float
    tokens: int


class Forgetting(_Result):
    """Adapted minus base on the same probe, each delta with a paired 95% bootstrap interval (over
    probe passages for the loss, over questions for the answers)."""

    probe: str
    weights_changed: bool
    base: ProbeScores
    adapted: ProbeScores
    delta_loss: float
    delta_loss_ci_low: float
    delta_loss_ci_high: float
    delta_perplexity: float
    delta_qa_contains: float
    delta_qa_contains_ci_low: float
    delta_qa_contains_ci_high: float

    def against(self, limit: float) -> Literal["within", "over", "unsure"]:
        """The rise in general-text loss judged by its interval, as the verdict and the gate both do:
        within the limit only when the whole interval is, over it only when the whole interval is."""
        if self.delta_loss_ci_high <= limit:
            return "within"
        return "over" if self.delta_loss_ci_low > limit else "unsure"


class Training(_Result):
    """What training an adapter cost, from its manifest (so a reused adapter reports the training
    that made it)."""

    wall_s: float
    steps: int | None = None
    epochs: float | None = None
    train_examples: int | None = None
    validation_examples: int | None = None
    tokens_seen: int | None = None
    tokens_per_s: float | None = None
    flops: float = 0.0
    flops_formula: str | None = None
    peak_memory_mb: float | None = None
    trainable_params: int | None = None
    adapter_bytes: int = 0
    first_loss: float | None = None
    final_loss: float | None = None
    best_eval_loss: float | None = None
    loss_history: list[float] = []
    resumed_from_step: int = 0
    adapter_path: str | None = None
    reused_adapter: bool = False


class Labelling(_Result):
    """A student's teacher labelling its inputs (the unlabeled ones, else the train split's;
    harness/distill.py): its requests, priced into the student's one-time cost."""

    teacher: str
    answers: int
    # Of `answers`, those trained on (harness/distill.py teacher_labels), and the others by reason
    # (empty, no_label, low_confidence); None in a report stored before answers were filtered.
    kept: int | None = None
    dropped: dict[str, int] = {}
    seconds: float  # the requests' measured time on this machine
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    usd_per_mtok: dict[str, float] | None = None  # a hosted teacher's prices


class Retrieval(_Result):
    index: str
    embedder: str
    documents: int
    chunks: int
    chunks_embedded: int
    chunks_reused: int
    index_from_cache: bool
    embed_s: float
    index_build_s: float
    passages_shown_mean: float
    k: int | None = None
    n_with_gold: int | None = None
    recall_at_k: float | None = None
    mrr: float | None = None


class CheckpointInfo(_Result):
    path: str
    kind: Literal["harness_adapter", "harness_model", "peft_adapter", "full_model"]
    base_model: str | None
    verified_digests: bool


class BreakEven(_Result):
    """When a fine-tuned arm's one-time cost is paid back by cheaper requests than another arm's.
    None when the saving per request is not shown to be above zero (its interval includes zero)."""

    requests: float | None
    months: float | None
    saving_usd: float = 0.0  # per request, the other arm's cost minus this one's
    saving_usd_ci_low: float | None = None
    saving_usd_ci_high: float | None = None


class Cost(_Result):
    basis: Literal["self_hosted", "api"]
    per_request_usd: float
    per_request_tokens: float = 0.0  # prompt + output tokens processed per request
    # Self-hosted: one price per token for every arm on the same architecture, calibrated from the
    # compare's pooled measured throughput, so equal tokens cost equal money.
    usd_per_token: float | None = None
    per_request_flops: float | None  # None: a hosted model of unknown size
    one_time_s: float
    one_time_usd: float
    one_time_flops: float
    labelling_usd: float = 0.0  # of one_time_usd, a student's teacher's labelling
    storage_bytes: int
    monthly_requests: int
    monthly_usd: float
    # Fine-tuned arms only: against each arm that is not fine-tuned.
    break_even: dict[str, BreakEven] = {}


class Answers(_Result):
    top: str  # normalised: lower case, surrounding space removed
    count: int  # examples answered with it
    gold_count: int  # examples whose gold answer it is


class ArmResult(_Result):
    """One strategy's row of the comparison."""

    name: str
    run_id: int
    n_examples: int
    quality: Quality
    metrics: dict[str, Interval]
    latency_ms: Latency
    throughput_eps: float | None
    tokens: Tokens
    params: dict[str, Any] = {}
    # What the arm is made of (harness/armspec.py ArmSpec.axes) and in a few words.
    axes: dict[str, Any] = {}
    made_of: str = ""
    # Which model answered, and its size (None on rows built by hand: the task's model; None too when
    # a hosted model's server does not tell it).
    model: str | None = None
    model_params: int | None = None
    # A hosted model's prices per million tokens ({"input": ..., "output": ...}): its requests are
    # priced at them, whatever the task's serving assumption.
    usd_per_mtok: dict[str, float] | None = None
    # Which weights answered: the base model's, or ones changed by training ("lora", "full", "checkpoint").
    weights: str = "base"
    # The prompt format ("chat" or "raw", harness/prompting.py) and, when calibrated, the label
    # distribution of content-free inputs every prediction was divided by.
    prompt_format: str = "chat"
    calibration: dict[str, float] | None = None
    # Examples whose input was cut to fit the model's context (prompt.overflow: truncate_input).
    truncated_inputs: int = 0
    # Classification: how the label was picked ("loglikelihood" or "generate"), and, generating, how
    # many answers named no label (each scored wrong).
    scoring: str | None = None
    unmatched_answers: int = 0
    peak_memory_mb: float = 0.0
    prepare_s: float = 0.0
    # Wall seconds this run of the arm took, preparing, evaluating and probing forgetting: scores
    # another arm already computed (a calibrated twin's) cost none, though their latency is billed.
    wall_s: float | None = None
    resumed_from: int = 0
    reused: bool = False
    forgetting: Forgetting | None = None
    # Why forgetting was not measured, when it was not (a hosted model: its weights are not here).
    forgetting_note: str | None = None
    training: Training | None = None
    labelling: Labelling | None = None  # a student's: its teacher's answers on its inputs
    retrieval: Retrieval | None = None
    checkpoint: CheckpointInfo | None = None
    cost: Cost | None = None
    # The answer given most often: an arm giving one answer for nearly every example is degenerate
    # (harness/verdict/judge.py), and no fine-tuning gain is measured against it.
    answers: Answers | None = None
    # A fair prompting baseline the task file lacked, added by the harness (harness/baselines.py).
    added_by_harness: bool = False

    @model_serializer(mode="wrap")
    def _omit_absent_parts(self, handler):
        # A part the strategy does not have is left out rather than null: the report's documented
        # shape has `training` only on fine-tuned rows, `retrieval` only on retrieval rows.
        out = handler(self)
        for part in ("forgetting", "forgetting_note", "training", "retrieval", "checkpoint", "cost", "calibration",
                     "usd_per_mtok", "scoring", "answers", "labelling"):
            if out.get(part, 0) is None:
                del out[part]
        return out

    @property
    def fine_tuned(self) -> bool:
        return self.weights != "base"

    def value(self, metric: str) -> float:
        return self.metrics[metric].value


class PairedDifference(_Result):
    """b against a on the same examples: `diff` = mean(b) - mean(a), its paired bootstrap interval,
    the paired test, and the smallest difference this many examples detect."""

    n: int
    diff: float
    ci_low: float
    ci_high: float
    test: Literal["mcnemar_exact", "paired_permutation"]
    p_value: float
    only_a: int | None = None  # McNemar's discordant counts
    only_b: int | None = None
    mde: float | None


class Pair(PairedDifference):
    """One pair of a comparison, with its Holm-adjusted p-value over all pairs."""

    a: str
    b: str
    p_holm: float
    significant: bool
    # The size of its Holm family (None in reports stored before families: every pair of the report).
    holm_over: int | None = None

    def flipped(self) -> Pair:
        """a against b: the same test, the difference negated."""
        return self.model_copy(update={
            "a": self.b, "b": self.a, "diff": -self.diff, "ci_low": -self.ci_high, "ci_high": -self.ci_low,
            "only_a": self.only_b, "only_b": self.only_a})


class Comparisons(_Result):
    metric: str
    alpha: float
    power: float
    confidence: float
    pairs: list[Pair]

    def pair(self, a: str, b: str) -> Pair:
        """The comparison of b against a, whichever order it was stored in."""
        for p in self.pairs:
            if (p.a, p.b) == (a, b):
                return p
            if (p.a, p.b) == (b, a):
                return p.flipped()
        raise KeyError(f"no paired comparison of {a} and {b}")


class CurvePoint(_Result):
    value: Any
    labelled_examples: int | None
    run_id: int
    n_examples: int
    quality: Quality
    metrics: dict[str, Interval]
    reused: bool = False


class Curve(_Result):
    strategy: str
    param: str
    fine_tuning: bool
    points: list[CurvePoint]
    # A student's curve (harness/distill.py): its labelled examples are this teacher arm's answers.
    labels_by: str | None = None

    def label(self) -> str:
        """The curve's name in plots."""
        return f"{self.strategy} ({self.param}" + (f", on {self.labels_by}'s answers)" if self.labels_by else ")")


class Recommendation(_Result):
    """The verdict as data (harness/verdict/decide.py): its `kind` and `cause`, the arms it names and
    its typed `findings`; `verdict`, `reasons` and `missing` are the same in English
    (harness/verdict/text.py), kept for readers of older reports."""

    kind: VerdictKind
    cause: Cause | None = None  # why a verdict is not a plain fine_tune / dont_fine_tune
    # The arm recommended (the fine-tuned winner, or the arm to use instead), and the arm without
    # fine-tuning that fine-tuning was held against.
    best: str | None = None
    alternative: str | None = None
    subject: str | None = None  # the fine-tuned arm a not_enough_evidence or cannot_decide is about
    metric: str
    # What the best arms lack, where it could be told: "knowledge" (facts retrieval supplies) and/or
    # "format" (a fine-tuned arm's win on the strict metric alone); their findings come first.
    gaps: list[str] = []
    findings: list[Finding] = []
    verdict: str = ""
    best_strategy: str | None = None  # `best`, under its old name
    reasons: list[str] = []
    missing: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _kind_of_an_older_report(cls, raw):
        # Reports stored before verdicts were data have the sentence alone, which begins with the kind.
        if isinstance(raw, dict) and "kind" not in raw and isinstance(raw.get("verdict"), str):
            kinds = {"fine-tune": "fine_tune", "don't": "dont_fine_tune", "not enough": "not_enough_evidence"}
            kind = next((k for prefix, k in kinds.items() if raw["verdict"].startswith(prefix)), "cannot_decide")
            raw = {**raw, "kind": kind, "best": raw.get("best_strategy")}
        return raw


class Assumptions(_Result):
    cost: CostConfig
    decision: DecisionConfig


class Provenance(_Result):
    git_sha: str | None
    packages: dict[str, str | None]
    python: str
    hardware: dict[str, Any]
    recorded_at: str
    task_file: str | None = None
    data_hash: str | None = None
    data_source: str | None = None


class ComparisonReport(_Result):
    task: str
    task_file: str
    model: str
    model_params: int | None
    task_type: str
    n_examples: int
    data_hash: str
    provenance: Provenance
    strategies: list[ArmResult]
    comparisons: Comparisons
    # The same pairs on the lenient metric (short answers), when the decision is made on another.
    content: Comparisons | None = None
    learning_curves: list[Curve] = []
    assumptions: Assumptions
    recommendation: Recommendation | None = None
    comparison_id: int | None = None

    def row(self, name: str) -> ArmResult:
        return next(r for r in self.strategies if r.name == name)


class Rule(_Result):
    name: str
    # inconclusive: the interval straddles the threshold; more examples would decide it.
    outcome: Literal["pass", "fail", "skipped", "inconclusive"]
    threshold: float | None
    observed: float | None
    message: str


class GateCandidate(_Result):
    run_id: int
    reused: bool
    checkpoint: CheckpointInfo | None
    quality: Interval
    latency_p95_ms: float
    forgetting_delta_loss: float


class GateBaseline(_Result):
    kind: Literal["run", "checkpoint", "base_model"]
    label: str
    run_id: int
    quality: Interval
    # The base model answers one thing for nearly every example under every fair prompt: no drop
    # against it can be shown (harness/verdict/judge.py).
    degenerate: bool = False


class GateResult(_Result):
    task: str
    task_file: str
    checkpoint: str
    passed: bool
    # fail when any rule fails, else inconclusive when any rule is, else pass.
    outcome: Literal["pass", "fail", "inconclusive"]
    metric: str
    candidate: GateCandidate
    baseline: GateBaseline
    difference: PairedDifference
    rules: list[Rule]
    provenance: Provenance
    gate_id: int | None = None

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.rules if r.outcome == "fail"]

    @property
    def inconclusive(self) -> list[str]:
        return [r.name for r in self.rules if r.outcome == "inconclusive"]
