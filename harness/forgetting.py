"""Forgetting: how much an adapted model lost of what the base model could do outside the task.

The probe is general text scored by loss (and perplexity) plus a small set of general
questions scored by token F1; the same probe runs on the base model and on each strategy's
model, and the report gives the deltas. Prompting strategies do not touch weights: their
model's weight fingerprint equals the base's, so their probe results are the base's own
measurement and the delta is exactly zero; a changed fingerprint triggers a new measurement."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.results import Forgetting, ProbeScores

PROBES = Path(__file__).parent / "probes"
DEFAULT_TEXT = PROBES / "general_text.jsonl"
DEFAULT_QUESTIONS = PROBES / "general_qa.jsonl"


@dataclass(frozen=True)
class Probe:
    name: str
    texts: list[str]
    questions: list[tuple[str, str]]


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
            rows.append(row)
    if not rows:
        raise HarnessError(str(path), "forgetting probe file is empty")
    return rows


def load_probe(task) -> Probe:
    cfg = task.config.forgetting
    text = Path(task.resolve(cfg.text)) if cfg.text else DEFAULT_TEXT
    questions = Path(task.resolve(cfg.questions)) if cfg.questions else DEFAULT_QUESTIONS
    return Probe(
        name=f"{text.name}+{questions.name}",
        texts=[r["text"] for r in _read_jsonl(text, ("text",))],
        questions=[(r["question"], r["answer"]) for r in _read_jsonl(questions, ("question", "answer"))],
    )


def weights_fingerprint(backend) -> str:
    """A hash of every parameter's bytes: equal fingerprints mean identical weights."""
    import hashlib

    import torch

    h = hashlib.blake2b(digest_size=16)
    for name, p in sorted(backend.model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def measure(backend, probe: Probe, max_tokens: int, batch_size: int) -> ProbeScores:
    from harness.metrics import score

    nll, n = 0.0, 0
    for i in range(0, len(probe.texts), batch_size):
        total, count = backend.text_nll(probe.texts[i:i + batch_size], max_tokens)
        nll, n = nll + total, n + count
    prompts = [backend.render([{"role": "user", "content": f"{q} Reply with the answer only."}])
               for q, _ in probe.questions]
    answers = []
    for i in range(0, len(prompts), batch_size):
        answers += [g.text.strip().splitlines()[0] if g.text.strip() else ""
                    for g in backend.generate(prompts[i:i + batch_size], max_new_tokens=12)]
    f1 = score("token_f1", answers, [a for _, a in probe.questions])
    loss = nll / n
    return ProbeScores(loss=loss, perplexity=math.exp(loss), qa_f1=sum(f1) / len(f1), tokens=n)


class ForgettingMeter:
    """Measures each distinct set of weights once; the base model's measurement is the reference."""

    def __init__(self, task, base_backend):
        self.probe = load_probe(task)
        self.cfg = task.config.forgetting
        self.batch_size = task.config.limits.batch_size
        self._by_weights: dict[str, ProbeScores] = {}
        self.base_fingerprint = self._fingerprint_and_measure(base_backend)

    def _fingerprint_and_measure(self, backend) -> str:
        fp = weights_fingerprint(backend)
        if fp not in self._by_weights:
            self._by_weights[fp] = measure(backend, self.probe, self.cfg.max_tokens, self.batch_size)
        return fp

    def delta(self, backend) -> Forgetting:
        fp = self._fingerprint_and_measure(backend)
        base, adapted = self._by_weights[self.base_fingerprint], self._by_weights[fp]
        return Forgetting(probe=self.probe.name, weights_changed=fp != self.base_fingerprint, base=base,
                          adapted=adapted, delta_loss=adapted.loss - base.loss,
                          delta_perplexity=adapted.perplexity - base.perplexity,
                          delta_qa_f1=adapted.qa_f1 - base.qa_f1)
