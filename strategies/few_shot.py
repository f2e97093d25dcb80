"""Few-shot in-context learning: k solved examples from the train split, then the query.

The demonstrations are drawn once per run with the task seed and shared by every eval example,
as a deployed prompt would be; they come only from train, and the data loader has already
refused any eval example whose input also appears in train, so no gold answer can leak."""

from __future__ import annotations

import random

from pydantic import Field

from harness.prompting import build_messages
from harness.strategy import BaseStrategy, Prompted, StrategyConfig


class Config(StrategyConfig):
    k: int = Field(4, ge=0, le=64, description="number of demonstrations (0, for learning curves: the "
                                                "zero-shot prompt)")
    balanced: bool = Field(True, description="classification: spread demos over labels round-robin")


class Strategy(BaseStrategy):
    name = "few_shot"
    demos = ()

    def prepare(self, data, backend):
        self.backend = backend
        self.demos = select_demos(data.train, self.config.k, self.task.config.seed,
                                  by_label=self.config.balanced and self.task.config.type == "classification")
        return backend

    def messages(self, example):
        return Prompted(build_messages(self.task, example, self.backend, demos=self.demos))

    def record(self):
        return {"demo_ids": [d.id for d in self.demos]}


def select_demos(pool, k: int, seed: int, by_label: bool):
    if k > len(pool):
        raise ValueError(f"few_shot.k={k} but the train split has only {len(pool)} examples")
    rng = random.Random(seed)
    if not by_label:
        return rng.sample(list(pool), k)
    # Round-robin over labels so k=5 on five topics shows each topic once rather than, by chance,
    # three business articles; labels are visited in a seeded order.
    by = {}
    for ex in pool:
        by.setdefault(ex.target, []).append(ex)
    labels = sorted(by)
    rng.shuffle(labels)
    for group in by.values():
        rng.shuffle(group)
    demos, i = [], 0
    while len(demos) < k:
        group = by[labels[i % len(labels)]]
        if group:
            demos.append(group.pop())
        i += 1
    # Interleaved order avoids all demos of one label sitting last (recency bias).
    rng.shuffle(demos)
    return demos
