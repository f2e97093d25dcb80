"""The verdict as data: its kind, and typed findings that each carry their numbers.

harness/verdict/decide.py builds them, harness/verdict/text.py is the one place they become English,
and the report JSON holds them as they are (`recommendation.kind`, `recommendation.findings`). A
program reading a report tests `kind` and a finding's `type` and fields, never a sentence.

A leaf module: pydantic and the standard library only."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

# The verdict, a closed set:
# - fine_tune: a fine-tuned arm earned it (`best`);
# - dont_fine_tune: use `alternative` instead;
# - not_enough_evidence: the data cannot tell yet; `cause` says what would;
# - cannot_decide: the comparison lacks what a verdict needs; `cause` says what.
VerdictKind = Literal["fine_tune", "dont_fine_tune", "not_enough_evidence", "cannot_decide"]

# Why a verdict is not a plain fine_tune / dont_fine_tune.
Cause = Literal[
    # cannot_decide
    "no_fine_tuning",  # no arm changed weights
    "no_baseline",  # only fine-tuned arms: nothing to hold them against
    "all_over_slo",  # every arm is over the latency SLO
    "nothing_within_limits",  # no arm is within both the SLO and the forgetting budget
    "forgetting_not_measured",
    # not_enough_evidence
    "examples",  # the paired difference is not settled on these examples (its judgement says why)
    "forgetting_unsure",  # the forgetting interval straddles the budget
    "format_only",  # the fine-tuned arm wins on answer format alone, and no arm with retrieval and
    #                 demonstrations was run to show what content it really adds
    "no_fair_baseline",  # every arm without fine-tuning is degenerate
]

# A fine-tuned arm against the best arm without fine-tuning (or a gate's candidate against its
# baseline), judged on the paired interval: harness/verdict/judge.py.
Outcome = Literal[
    "better",  # significantly better, the interval's lower end at least the margin
    "worse",  # significantly worse
    "equivalent",  # the interval inside +-margin (two one-sided tests)
    "non_inferior",  # the interval's lower end above -margin
    "inferior",  # the interval's upper end below -margin
    "undecided",  # none of those: `examples_needed` says about how many examples would settle it
    "too_few",  # fewer paired examples than the intervals need
    "no_variation",  # both scored the same on every example: no difference can be estimated
]


class _Finding(BaseModel):
    # Kept when unknown: a report stored by a newer harness still loads in an older dashboard.
    model_config = ConfigDict(extra="allow", frozen=True)


class Estimate(_Finding):
    """`b` against `a` on the same examples: mean(b) - mean(a), with its paired interval."""

    a: str
    b: str
    metric: str
    n: int
    diff: float
    ci_low: float
    ci_high: float
    confidence: float


class PairedTest(_Finding):
    """The paired test behind an estimate, Holm-adjusted over the comparison's pairs."""

    name: Literal["mcnemar_exact", "paired_permutation"]
    p_value: float
    p_holm: float
    comparisons: int  # the size of the Holm family
    significant: bool


class Quality(_Finding):
    type: Literal["quality"] = "quality"
    arm: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int


class Pair(_Finding):
    """A fine-tuned arm against the arm it is judged against, with the smallest difference these
    examples detect (`mde`, None when every example scored the same under both)."""

    type: Literal["pair"] = "pair"
    estimate: Estimate
    test: PairedTest
    mde: float | None
    alpha: float
    power: float


class Judgement(_Finding):
    """A fine-tuned arm against the best arm without fine-tuning (decide's rule 4)."""

    type: Literal["judgement"] = "judgement"
    arm: str
    against: str
    outcome: Outcome
    margin: float  # the minimum gain worth having
    estimate: Estimate
    min_examples: int  # fewer paired examples cannot be judged
    # Undecided: about how many paired examples would settle it if the difference held (None when
    # the estimate sits on a threshold, where no number does).
    examples_needed: int | None = None
    # Equivalent: cost decides. Whether the one-time cost is paid back against `alternative` within
    # `payback_months` by cheaper requests.
    alternative: str | None = None
    paid_back: bool | None = None
    payback_months: float | None = None


class Forgetting(_Finding):
    type: Literal["forgetting"] = "forgetting"
    arm: str
    status: Literal["within", "over", "unsure"]  # the loss interval against the budget
    budget: float  # nats per token
    delta_loss: float
    delta_loss_ci_low: float
    delta_loss_ci_high: float
    delta_qa_contains: float
    delta_qa_contains_ci_low: float
    delta_qa_contains_ci_high: float


class Cost(_Finding):
    type: Literal["cost"] = "cost"
    arm: str
    basis: Literal["self_hosted", "api"]
    per_request_usd: float
    per_request_flops: float | None
    monthly_usd: float
    monthly_requests: int


class BreakEven(_Finding):
    """A fine-tuned arm's one-time cost against the per-request saving over another arm."""

    type: Literal["break_even"] = "break_even"
    arm: str
    against: str
    one_time_usd: float
    one_time_s: float
    one_time_flops: float
    saving_usd: float  # per request
    saving_usd_ci_low: float | None
    saving_usd_ci_high: float | None
    requests: float | None  # None: no saving shown, never paid back
    months: float | None
    monthly_requests: int
    payback_months: float


class Latency(_Finding):
    type: Literal["latency"] = "latency"
    p95_ms: dict[str, float]
    slo_ms: float | None


class OverSlo(_Finding):
    type: Literal["over_slo"] = "over_slo"
    arm: str
    p95_ms: float
    slo_ms: float


class CheaperEquivalent(_Finding):
    """The arm to use instead of the best arm without fine-tuning: as good (TOST) and cheaper."""

    type: Literal["cheaper_equivalent"] = "cheaper_equivalent"
    arm: str
    instead_of: str
    per_request_usd: float
    instead_of_per_request_usd: float
    estimate: Estimate
    margin: float


class ModelRef(_Finding):
    arm: str
    model: str | None
    hosted: bool
    params: int | None


class AcrossModels(_Finding):
    """A fine-tuned arm against an arm on another model (a large hosted one the team pays for)."""

    type: Literal["models"] = "models"
    arm: ModelRef
    against: ModelRef
    outcome: Literal["better", "equivalent", "non_inferior", "worse", "undecided"]
    estimate: Estimate
    margin: float
    cost_share: float  # the fine-tuned arm's cost per request over the other's
    break_even_requests: float | None


class Distillation(_Finding):
    """A student trained on a teacher arm's answers (`teacher:`) against that teacher, on the same
    examples: non-inferiority within `margin`, judged on the pair's interval (its lower end is a
    one-sided bound at 1 - (1 - confidence) / 2)."""

    type: Literal["distillation"] = "distillation"
    student: str
    teacher: str
    outcome: Literal["non_inferior", "inferior", "undecided", "too_few"]
    margin: float
    estimate: Estimate  # student against teacher
    examples_needed: int | None = None
    # The student's quality over the teacher's, its interval the paired one over the teacher's mean
    # (None: the teacher scored zero).
    kept_share: float | None
    kept_share_ci_low: float | None
    kept_share_ci_high: float | None
    cost_share: float | None  # the student's cost per request over the teacher's (None: the teacher's is zero)
    # Requests after which its training and its teacher's labelling are paid back by cheaper requests
    # than the teacher's (None: no saving shown, or the teacher is fine-tuned too).
    break_even_requests: float | None = None
    # Against the arm of the same model and method trained on the gold labels, when the task has one:
    # what the labels were worth.
    gold_arm: str | None = None
    gold: Estimate | None = None
    # The teacher's answers on the inputs it labelled, of those the ones trained on, and the others by
    # reason (harness/distill.py teacher_labels); None from a report stored before they were counted.
    answers: int | None = None
    kept: int | None = None
    dropped: dict[str, int] = {}


class KnowledgeGap(_Finding):
    """Retrieval raises the answers that contain the gold answer: facts the model lacks."""

    type: Literal["knowledge_gap"] = "knowledge_gap"
    with_retrieval: str
    without: str
    estimate: Estimate  # on the lenient metric
    test: PairedTest


class LacksKnowledge(_Finding):
    """A fine-tuned arm without retrieval contains the gold answer less often than retrieval."""

    type: Literal["lacks_knowledge"] = "lacks_knowledge"
    arm: str
    against: str
    estimate: Estimate
    test: PairedTest


class FormatGap(_Finding):
    """The fine-tuned winner leads on the strict metric but not on content (the lenient metric)."""

    type: Literal["format_gap"] = "format_gap"
    arm: str
    strict: Estimate
    content: Estimate
    test: PairedTest
    # The arm with retrieval and demonstrations shown as good on content (non-inferior by
    # `margin`), recommended instead; None when the task has none.
    instead: str | None = None
    instead_estimate: Estimate | None = None
    margin: float
    # content: a short answer's lead that the lenient metric does not show; decoding: a structured
    # task's, where `strict` is the format measure (schema_valid) against the best arm without
    # fine-tuning, `content` the fields against the best schema-constrained arm, `instead` that arm.
    by: Literal["content", "decoding"] = "content"


class FieldsLead(_Finding):
    """Structured task: the fine-tuned winner also beats the best schema-constrained arm on the
    fields, so its lead is content, not only format."""

    type: Literal["fields_lead"] = "fields_lead"
    arm: str
    against: str
    estimate: Estimate  # on the decision metric, arm against `against`
    test: PairedTest


class FormatLead(_Finding):
    """The best arm without fine-tuning on the strict metric holds the gold answer less often than
    another arm without it: its lead is answer format."""

    type: Literal["format_lead"] = "format_lead"
    arm: str
    other: str
    metric: str  # the strict one
    estimate: Estimate  # on the lenient metric, other against arm
    test: PairedTest


class PointQuality(_Finding):
    value: float | int | str | bool | None
    labelled_examples: int | None
    quality: float
    ci_low: float
    ci_high: float


class Overtake(_Finding):
    """Learning curves: from how many labelled examples fine-tuning overtakes in-context learning."""

    type: Literal["overtake"] = "overtake"
    metric: str
    outcome: Literal["overtakes", "never", "no_fine_tuning_curve", "no_in_context_curve"]
    # The best in-context point (any in-context curve, any number of demonstrations).
    best_curve: str | None = None
    best_param: str | None = None
    best: PointQuality | None = None
    # The first fine-tuning point above it; `clear`: its interval entirely above.
    curve: str | None = None
    param: str | None = None
    point: PointQuality | None = None
    clear: bool | None = None
    most_labelled: int | None = None  # never: up to how many labelled examples were tried


class CurveListed(_Finding):
    """A learning curve that cannot answer the overtaking question, listed as it is."""

    type: Literal["curve"] = "curve"
    strategy: str
    param: str
    metric: str
    points: list[PointQuality]
    labels_by: str | None = None  # a student's curve: its labelled examples are this teacher's answers


class Degenerate(_Finding):
    """An arm that gives one answer for most examples (a prompt that fails the model, not the
    task's real baseline); its wins and losses are not a fair comparison."""

    type: Literal["degenerate"] = "degenerate"
    arm: str
    fine_tuned: bool
    answer: str
    count: int
    n: int
    threshold: float  # the share of one answer that makes an arm degenerate


class BaselinesAdded(_Finding):
    """Prompting baselines the task file lacked, added and run by the harness."""

    type: Literal["baselines_added"] = "baselines_added"
    arms: list[str]


class Missing(_Finding):
    """What was not run that the verdict would need or use."""

    type: Literal["missing"] = "missing"
    what: Literal["fine_tuning", "retrieval", "forgetting", "fair_baseline", "constrained_decoding"]
    arm: str | None = None  # forgetting: whose
    # fair_baseline: the arms to add (their task-file entries).
    suggest: dict[str, dict] = {}


Finding = Annotated[Union[Quality, Pair, Judgement, Forgetting, Cost, BreakEven, Latency, OverSlo, CheaperEquivalent,
                          AcrossModels, KnowledgeGap, LacksKnowledge, FormatGap, FormatLead, Overtake, CurveListed,
                          Degenerate, Distillation, BaselinesAdded, Missing, FieldsLead], Field(discriminator="type")]
