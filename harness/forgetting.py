"""Forgetting: how much an adapted model lost of what the base model could do outside the task.

The probe is general text scored by loss (and perplexity), plus general questions answered by
greedy generation and scored by lenient containment: does the answer contain the gold answer (or
one of its aliases), after SQuAD normalisation, wherever it says it? Both "Paris" and "The capital
of France is Paris." answer the first question, so the score does not depend on the answer's form.
Token F1 of the generations rose by tens of points after an adapter merely taught the model to
answer in one word; scoring the gold answers' log-probabilities did too, even against every other
probe answer (a model that answers tersely puts its mass on short answers, right or wrong). The
same probe runs on the base model and on each model whose weights an arm changed; the report gives
the deltas with paired bootstrap intervals, over passages for the loss and over questions for the
answers. Prompting strategies do not touch weights, so nothing is measured for them: beside an
arm that changed weights, their row is the base against itself (`unchanged`), every delta and
interval exactly zero. Measurements are kept by weight fingerprint, so equal weights are measured
once."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.backends.base import Backend, HasWeights, Prompt
from harness.config import DEFAULT_BATCH_SIZE
from harness.errors import HarnessError
from harness.metrics._text import contains as contains_answer
from harness.results import Forgetting, ProbeScores
from harness.stats import CONFIDENCE, paired_bootstrap_ci

if TYPE_CHECKING:
    from harness.task import LoadedTask

PROBES = Path(__file__).parent / "probes"
DEFAULT_TEXT = PROBES / "general_text.jsonl"
DEFAULT_QUESTIONS = PROBES / "general_qa.jsonl"


@dataclass(frozen=True)
class Probe:
    name: str
    texts: list[str]
    questions: list[tuple[str, list[str]]]  # the question, then its gold answer and aliases


def _read_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise HarnessError(str(path), "forgetting probe file not found")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise HarnessError(f"{path}: row {i}", f"not valid JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise HarnessError(f"{path}: row {i}", f"expected an object with {', '.join(fields)}")
            missing = [f for f in fields if not str(row.get(f) or "").strip()]
            if missing:
                raise HarnessError(f"{path}: row {i}", f"missing field '{missing[0]}'")
            aliases = row.get("aliases", [])
            if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
                raise HarnessError(f"{path}: row {i}", "aliases: expected a list of other accepted answers")
            rows.append(row)
    if not rows:
        raise HarnessError(str(path), "forgetting probe file is empty")
    return rows


def load_probe(task: LoadedTask) -> Probe:
    cfg = task.config.forgetting
    text = Path(task.resolve(cfg.text)) if cfg.text else DEFAULT_TEXT
    questions = Path(task.resolve(cfg.questions)) if cfg.questions else DEFAULT_QUESTIONS
    return Probe(
        name=f"{text.name}+{questions.name}",
        texts=[r["text"] for r in _read_jsonl(text, ("text",))],
        questions=[(r["question"], [r["answer"], *r.get("aliases", [])])
                   for r in _read_jsonl(questions, ("question", "answer"))],
    )


def weights_fingerprint(backend: HasWeights) -> str:
    """A hash of every parameter's bytes: equal fingerprints mean identical weights."""
    import hashlib

    import torch

    h = hashlib.blake2b(digest_size=16)
    for name, p in sorted(backend.model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Measurement:
    """One set of weights on the probe, kept per passage and per question so that the deltas
    against another set can be paired."""

    nll: np.ndarray  # summed over each passage's predicted tokens
    tokens: np.ndarray  # predicted tokens per passage
    answered: np.ndarray  # per question: 1.0 when the answer contains the gold answer or an alias

    @property
    def scores(self) -> ProbeScores:
        loss = float(self.nll.sum() / self.tokens.sum())
        return ProbeScores(loss=loss, perplexity=math.exp(loss), qa_contains=float(self.answered.mean()),
                           tokens=int(self.tokens.sum()))


def question_prompt(backend: Backend, question: str) -> Prompt:
    return backend.render([{"role": "user", "content": f"{question} Reply with the answer only."}])


# Room for an answer in a sentence ("The largest planet in the Solar System is Jupiter.").
ANSWER_TOKENS = 24


def measure(backend: HasWeights, probe: Probe, max_tokens: int, batch_size: int) -> Measurement:
    # Kept per passage: the interval resamples passages. Batched by length, so little is padding.
    ordered = sorted(probe.texts, key=len)
    nll_of = {}
    for i in range(0, len(ordered), batch_size):
        chunk = ordered[i:i + batch_size]
        nll_of.update(zip(chunk, backend.text_nll(chunk, max_tokens)))
    per_passage = [nll_of[text] for text in probe.texts]
    return Measurement(nll=np.array([nll for nll, _ in per_passage], dtype=float),
                       tokens=np.array([n for _, n in per_passage], dtype=float),
                       answered=answered(backend, probe.questions, batch_size))


def contains(answer: str, gold: list[str]) -> bool:
    """Lenient containment: a gold answer's normalised words appear, in order and whole, in the
    normalised answer."""
    return any(contains_answer(answer, g) for g in gold)


def answered(backend: Backend, questions: list[tuple[str, list[str]]], batch_size: int) -> np.ndarray:
    out = []
    for i in range(0, len(questions), batch_size):
        chunk = questions[i:i + batch_size]
        gens = backend.generate([question_prompt(backend, q) for q, _ in chunk], ANSWER_TOKENS)
        out += [float(contains(g.text, gold)) for g, (_, gold) in zip(gens, chunk)]
    return np.array(out)


def _loss_delta(base_nll, base_tokens, nll, tokens, axis=-1):
    return nll.sum(axis) / tokens.sum(axis) - base_nll.sum(axis) / base_tokens.sum(axis)


def loss_delta_ci(base: Measurement, adapted: Measurement, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the change in loss, resampling passages paired across the
    two measurements. The loss is a ratio of sums (longer passages weigh more), so each resample
    recomputes both ratios rather than averaging per-passage losses."""
    from scipy.stats import bootstrap

    data = (base.nll, base.tokens, adapted.nll, adapted.tokens)
    if len(base.nll) < 2:
        # One passage: nothing to resample; the interval is the point, as in harness.stats.
        point = float(_loss_delta(*data))
        return point, point
    res = bootstrap(data, _loss_delta, paired=True, vectorized=True, confidence_level=CONFIDENCE,
                    method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


class ForgettingMeter:
    """Measures each distinct set of weights once; the base model's measurement is the reference."""

    def __init__(self, task: LoadedTask, base_backend: HasWeights):
        self.probe = load_probe(task)
        self.cfg = task.config.forgetting
        size = task.config.limits.batch_size
        # The probe is a few dozen short texts: a fixed batch serves it whatever the task's is.
        self.batch_size = size if isinstance(size, int) else DEFAULT_BATCH_SIZE
        self.seed = task.config.seed
        self._by_weights: dict[str, Measurement] = {}
        self.base_fingerprint = self._fingerprint_and_measure(base_backend)

    def _fingerprint_and_measure(self, backend: HasWeights) -> str:
        fp = weights_fingerprint(backend)
        if fp not in self._by_weights:
            self._by_weights[fp] = measure(backend, self.probe, self.cfg.max_tokens, self.batch_size)
        return fp

    def delta(self, backend: HasWeights) -> Forgetting:
        fp = self._fingerprint_and_measure(backend)
        base, adapted = self._by_weights[self.base_fingerprint], self._by_weights[fp]
        before, after = base.scores, adapted.scores
        loss_low, loss_high = loss_delta_ci(base, adapted, self.seed)
        qa_low, qa_high = paired_bootstrap_ci(base.answered, adapted.answered, self.seed)
        return Forgetting(probe=self.probe.name, weights_changed=fp != self.base_fingerprint, base=before,
                          adapted=after, delta_loss=after.loss - before.loss, delta_loss_ci_low=loss_low,
                          delta_loss_ci_high=loss_high, delta_perplexity=after.perplexity - before.perplexity,
                          delta_qa_contains=after.qa_contains - before.qa_contains, delta_qa_contains_ci_low=qa_low,
                          delta_qa_contains_ci_high=qa_high)


def unchanged(measured: Forgetting) -> Forgetting:
    """The base weights against themselves, from another set's measurement against them: every
    change and interval is exactly zero, and nothing is run."""
    zero = {f: 0.0 for f in ("delta_loss", "delta_loss_ci_low", "delta_loss_ci_high", "delta_perplexity",
                             "delta_qa_contains", "delta_qa_contains_ci_low", "delta_qa_contains_ci_high")}
    return measured.model_copy(update={"weights_changed": False, "adapted": measured.base, **zero})
