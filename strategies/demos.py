"""Demonstrations: k solved train examples shown as prior chat turns before the query.

They come only from train, and the data loader has already refused any eval example whose input
also appears in train, so no gold answer can leak. Three ways to choose them:
- `random`: k examples drawn once per run with the task seed, shared by every query, as a deployed
  prompt would be;
- `balanced` (the default): the same, round-robin over labels for classification, so k=5 on five
  topics shows each topic once rather than, by chance, three business articles (random for other
  task types);
- `similar`: per query, the k train examples whose inputs are nearest to it by embedding (Liu et
  al. 2022, "What makes good in-context examples for GPT-3?"), the nearest placed last, next to the
  query."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from harness.config import ComponentConfig
from harness.errors import HarnessError
from harness.examples import Example, TaskData
from harness.strategy import Component

if TYPE_CHECKING:
    from harness.task import LoadedTask

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


class Config(ComponentConfig):
    k: int = Field(4, ge=0, le=64, description="number of demonstrations (0, for learning curves: none)")
    select: Literal["random", "balanced", "similar"] = Field(
        "balanced", description="random, balanced (round-robin over labels) or similar (nearest to each query "
                                "by embedding)")
    embedder: str = Field(DEFAULT_EMBEDDER, description="similar: sentence-transformers model name or local folder")


class Demos(Component):
    def __init__(self, config: Config, task: LoadedTask, where: str):
        super().__init__(config, task, where)
        self.fixed = ()

    def check(self) -> None:
        """Fail before any run starts when `similar` has no embedder to choose with."""
        if self.config.select == "similar" and self.config.k:
            self._embedder()

    def _embedder(self):
        from strategies.rag.index import load_embedder

        return load_embedder(self.config.embedder, self.task.path.parent, f"{self.where}.embedder")

    def prepare(self, data: TaskData) -> None:
        cfg = self.config
        if cfg.k > len(data.train):
            raise HarnessError(f"{self.where}.k", f"{cfg.k} demonstrations but the train split has only "
                                                  f"{len(data.train)} examples")
        if cfg.select != "similar":
            by_label = cfg.select == "balanced" and self.task.config.type == "classification"
            self.fixed = select_demos(data.train, cfg.k, self.task.config.seed, by_label)
            return
        self.pool = list(data.train)
        if cfg.k:
            import faiss

            from strategies.rag.index import embed_texts

            self.embedder = self._embedder()
            vectors, _ = embed_texts(self.embedder, cfg.embedder, [ex.input for ex in self.pool])
            self.index = faiss.IndexFlatIP(vectors.shape[1])
            self.index.add(vectors)

    def _embed(self, texts):
        return self.embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False,
                                    batch_size=64)

    def for_example(self, example: Example) -> list[Example]:
        if self.config.select != "similar" or not self.config.k:
            return list(self.fixed)
        _, ids = self.index.search(self._embed([example.input]), self.config.k)
        # Nearest last: it sits next to the query, where a small model attends most.
        return [self.pool[i] for i in reversed(ids[0]) if i >= 0]

    def record(self) -> dict:
        # Similar demonstrations differ per query: they are in each example's trace instead.
        return {"demo_ids": [d.id for d in self.fixed]} if self.config.select != "similar" else {}


def select_demos(pool, k: int, seed: int, by_label: bool):
    rng = random.Random(seed)
    if not by_label:
        return rng.sample(list(pool), k)
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
