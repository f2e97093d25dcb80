"""The runner: the one place that executes strategies' prompts, times them, counts tokens and
scores, so every strategy's row is measured identically."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.backends.base import Backend, Prompt, Scorer
from harness.examples import Example, Prompted
from harness.measure import timer
from harness.metrics import score
from harness.metrics._text import contains, normalize_answer
from harness.prompting import content_free, render, scoring
from harness.strategy import Strategy

if TYPE_CHECKING:
    from harness.task import LoadedTask


@dataclass
class ExampleResult:
    example_id: str
    prompt: str
    prediction: str
    target: str
    scores: dict[str, float]
    prompt_tokens: int
    output_tokens: int
    latency_ms: float
    extra: dict[str, Any] = field(default_factory=dict)
    cached_tokens: int = 0  # of prompt_tokens, those served from a cache of the arm's shared prefix


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def match_label(answer: str, labels: list[str]) -> str | None:
    """The label a generated answer gives: its first line equal to a label once normalised
    (case, punctuation, articles), else the one label its first line contains as whole words. An
    answer naming no label or several matches none: it is scored wrong, never given a default."""
    line = _first_line(answer)
    exact = [label for label in labels if normalize_answer(label) == normalize_answer(line)]
    named = exact or [label for label in labels if contains(line, label)]
    return named[0] if len(named) == 1 else None


def _label_probs(logprobs: list[float]) -> list[float]:
    """The labels' probabilities given that the answer is one of them."""
    from scipy.special import softmax

    return softmax(logprobs).tolist()


def calibration(task: LoadedTask, strategy: Strategy, backend: Scorer, example: Example) -> dict[str, float]:
    """Contextual calibration (Zhao et al. 2021): the label distribution the arm's prompt gives
    content-free inputs, averaged over them. Dividing by it removes the bias the prompt itself puts
    on each label; no eval label is used. `example` supplies the template's other columns."""
    cfg = task.config
    free = content_free(example, cfg.fields.input)
    scored = backend.loglikelihood([render(task, backend, strategy.messages(ex).messages) for ex in free],
                                   cfg.labels)
    probs = [_label_probs(s.logprobs) for s in scored]
    return {label: sum(p[j] for p in probs) / len(probs) for j, label in enumerate(cfg.labels)}


@dataclass(frozen=True)
class Rendered:
    """One eval example with its prompt as the arm sends it, and the time building it took."""

    example: Example
    prompted: Prompted
    prompt: Prompt
    ms: float  # strategy.messages and render: retrieval, for an arm that retrieves


def rendered(task: LoadedTask, strategy: Strategy, backend: Backend, examples: list[Example]) -> list[Rendered]:
    """Every example's prompt, built once, shortest first: batches of prompts of about one length
    waste little compute on padding. Sorted by the prompt's tokens, not its input's: in an arm that
    retrieves, the passages make most of a prompt's length."""
    out = []
    for ex in examples:
        with timer() as built:
            prompted = strategy.messages(ex)
            prompt = render(task, backend, prompted.messages)
        out.append(Rendered(ex, prompted, prompt, built.ms))
    return sorted(out, key=lambda r: r.prompt.n_tokens)


def run_strategy(task: LoadedTask, strategy: Strategy, backend: Backend, examples: list[Example], *,
                 on_batch: Callable[[list[ExampleResult]], None],
                 progress: Callable[[int], None] = lambda n: None, bias: dict[str, float] | None = None,
                 constrained: bool = False) -> None:
    """Evaluate `examples` in length-sorted batches; hand each finished batch to `on_batch`.
    `task` is the task as the arm runs it (its model and prompt settings); `bias`, the arm's
    `calibration`, when classification is calibrated.

    Latency per example is the wall time of its batch divided by the batch size, the compute an
    example costs at this batch size, plus the time building its own prompt took (so retrieval
    counts). Batches are sorted by prompt length (`rendered`) so padding stays small and short
    prompts are not billed for long neighbours. An example sent as its own request (a hosted
    model) has that request's latency instead.

    Classification ranks the labels by log-likelihood, or generates and matches the answer to a
    label (`match_label`; prompt.scoring). A `constrained` arm generates under the structured task's
    schema (its `decoding: {json_schema: true}`)."""
    cfg = task.config
    ordered = rendered(task, strategy, backend, examples)
    how = scoring(task, backend)
    size = cfg.limits.batch_size
    if size == "auto" and ordered:
        # Probed on the longest prompts, which need the most memory.
        size = backend.auto_batch_size(lambda n: [r.prompt for r in ordered[-n:]],
                                       cfg.labels if how == "loglikelihood" else None, cfg.limits.max_new_tokens)
    for start in range(0, len(ordered), size):
        items = ordered[start:start + size]
        batch, prompts = [r.example for r in items], [r.prompt for r in items]
        with timer() as elapsed:
            if how == "loglikelihood":
                scored = backend.loglikelihood(prompts, cfg.labels)
                ranked = [s.logprobs for s in scored]
                extras = [{"logprobs": dict(zip(cfg.labels, s.logprobs))} for s in scored]
                if bias is not None:
                    ranked = [[math.log(p / bias[label]) for p, label in zip(_label_probs(r), cfg.labels)]
                              for r in ranked]
                    extras = [{**e, "calibrated": dict(zip(cfg.labels, r))} for e, r in zip(extras, ranked)]
                preds = [cfg.labels[max(range(len(cfg.labels)), key=r.__getitem__)] for r in ranked]
                counts = [(s.prompt_tokens, 0, s.cached_tokens) for s in scored]
                own_ms = [s.latency_ms for s in scored]
            else:
                gens = backend.generate(prompts, cfg.limits.max_new_tokens,
                                        schema=cfg.answer_schema if constrained else None, stop=cfg.limits.stop)
                if how == "generate":
                    labels = [match_label(g.text, cfg.labels) for g in gens]
                    preds = [label if label is not None else _first_line(g.text) for g, label in zip(gens, labels)]
                    extras = [{"raw_output": g.text, **({"unmatched": True} if label is None else {})}
                              for g, label in zip(gens, labels)]
                else:
                    preds = [_first_line(g.text) if cfg.type == "short_answer" else g.text for g in gens]
                    extras = [{"raw_output": g.text} if g.text != p else {} for g, p in zip(gens, preds)]
                counts = [(g.prompt_tokens, g.output_tokens, g.cached_tokens) for g in gens]
                own_ms = [g.latency_ms for g in gens]
        # A request of its own (hosted) has its own latency; a batch's examples share its time.
        latencies = own_ms if None not in own_ms else [elapsed.ms / len(batch) + r.ms for r in items]
        # An input without a label (a teacher's, harness/distill.py) has nothing to be scored against.
        gold = [i for i, ex in enumerate(batch) if ex.target]
        metric_scores = {m: dict(zip(gold, score(m, [preds[i] for i in gold], [batch[i].references for i in gold],
                                                 cfg.answer_schema))) for m in cfg.metric_names}
        on_batch([
            ExampleResult(r.example.id, r.prompt.text, pred, r.example.target,
                          {m: s[i] for m, s in metric_scores.items() if i in s}, n_in, n_out, ms,
                          {**extra, **r.prompted.trace}, n_cached)
            for i, (r, pred, (n_in, n_out, n_cached), extra, ms) in enumerate(
                zip(items, preds, counts, extras, latencies))
        ])
        progress(len(batch))
