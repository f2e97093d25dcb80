"""The runner: the one place that executes strategies' prompts, times them, counts tokens and
scores, so every strategy's row is measured identically."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.metrics import score


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


def peak_memory_mb() -> float:
    """Peak accelerator memory when there is one, else the process's peak resident set size.

    On CPU this is a process-wide high-water mark (it includes the model weights and never goes
    down), which is what a deployment would have to provision."""
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def run_strategy(task, strategy, backend, examples, *, on_batch: Callable[[list[ExampleResult]], None],
                 progress: Callable[[int], None] = lambda n: None) -> None:
    """Evaluate `examples` in length-sorted batches; hand each finished batch to `on_batch`.

    Latency per example is the wall time of its batch (prompt building included, so retrieval
    counts) divided by the batch size: the compute an example costs at this batch size. Batches
    are sorted by prompt length so padding stays small and short prompts are not billed for
    long neighbours."""
    cfg = task.config
    # Input length in characters is a good enough proxy for prompt length: the rest of the prompt
    # is shared, and rendering here would run retrieval twice.
    ordered = sorted(examples, key=lambda ex: len(ex.input))
    size = cfg.limits.batch_size
    for start in range(0, len(ordered), size):
        batch = ordered[start:start + size]
        t0 = time.perf_counter()
        # Prompts are built inside the timed region: a strategy whose prompt costs work (retrieval)
        # pays for it in latency.
        prompts, traces = [], []
        for ex in batch:
            prompts.append(backend.render(strategy.messages(ex)))
            traces.append(strategy.trace(ex))
        if cfg.type == "classification":
            scored = backend.loglikelihood(prompts, cfg.labels)
            preds = [cfg.labels[max(range(len(cfg.labels)), key=s.logprobs.__getitem__)] for s in scored]
            counts = [(s.prompt_tokens, 0) for s in scored]
            extras = [{"logprobs": dict(zip(cfg.labels, s.logprobs))} for s in scored]
        else:
            gens = backend.generate(prompts, cfg.limits.max_new_tokens)
            preds = [_first_line(g.text) if cfg.type == "short_answer" else g.text for g in gens]
            counts = [(g.prompt_tokens, g.output_tokens) for g in gens]
            extras = [{"raw_output": g.text} if g.text != p else {} for g, p in zip(gens, preds)]
        per_example_ms = (time.perf_counter() - t0) * 1000 / len(batch)
        targets = [ex.target for ex in batch]
        metric_scores = {m: score(m, preds, targets) for m in cfg.metric_names}
        on_batch([
            ExampleResult(ex.id, p.text, pred, ex.target, {m: metric_scores[m][i] for m in metric_scores},
                          n_in, n_out, per_example_ms, {**extra, **trace})
            for i, (ex, p, pred, (n_in, n_out), extra, trace) in enumerate(
                zip(batch, prompts, preds, counts, extras, traces))
        ])
        progress(len(batch))
