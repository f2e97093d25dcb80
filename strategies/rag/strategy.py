"""Retrieval as an arm's context: its parameters, and the per-question work of retrieving chunks and
packing the best of them into what the model's context leaves after the rest of the prompt (the
question, any demonstrations) and the answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from harness.backends.base import Backend
from harness.config import ComponentConfig
from harness.errors import HarnessError
from harness.examples import Example, TaskData
from harness.measure import timer
from harness.prompting import answer_room
from harness.results import Retrieval
from harness.strategy import Component
from strategies.rag.corpus import Document, corpus_hash, read_corpus
from strategies.rag.index import load_embedder, load_or_build, set_search_params
from strategies.rag.metrics import gold_documents, retrieval_quality

if TYPE_CHECKING:
    from harness.task import LoadedTask

CONTEXT_HEADER = "Context:"


class Config(ComponentConfig):
    corpus: list[str] = Field(min_length=1, description="files, folders or .jsonl document files, relative to the "
                                                        "task YAML")
    embedder: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model name or local folder")
    chunk_size: int = Field(128, ge=8, le=8192, description="tokens per chunk, counted by the embedder's tokenizer")
    chunk_overlap: int = Field(32, ge=0, description="tokens shared by consecutive chunks of a document")
    top_k: int = Field(3, ge=1, le=100, description="chunks retrieved per question")
    index: Literal["flat", "hnsw", "ivf"] = Field("flat", description="flat: exact search; hnsw or ivf: approximate, "
                                                                      "for large corpora")
    ef_search: int = Field(64, ge=1, description="hnsw: candidates explored per search (higher: better recall, slower)")
    nprobe: int = Field(16, ge=1, description="ivf: clusters searched per query (higher: better recall, slower)")
    max_context_tokens: PositiveInt | None = Field(None, description="cap on retrieved-passage tokens (default: all "
                                                                     "the model's context leaves)")
    gold_field: str | None = Field(None, description="eval column with the gold document id(s), for recall@k and MRR")

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _overlap_smaller(self):
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap: must be smaller than chunk_size ({self.chunk_size})")
        return self


class Context(Component):
    def __init__(self, config: Config, task: LoadedTask, where: str):
        super().__init__(config, task, where)
        self.documents: list[Document] | None = None

    def _docs(self) -> list[Document]:
        if self.documents is None:
            self.documents = read_corpus(self.config.corpus, self.task.path.parent, f"{self.where}.corpus")
            self.corpus_hash = corpus_hash(self.documents)
        return self.documents

    def fingerprint(self):
        self._docs()
        return {"corpus": self.corpus_hash}

    def check(self) -> None:
        self._docs()

    def prepare(self, data: TaskData, backend: Backend) -> None:
        cfg, docs = self.config, self._docs()
        self.backend = backend
        self.embedder = load_embedder(cfg.embedder, self.task.path.parent, f"{self.where}.embedder")
        with timer() as build:
            built = load_or_build(docs, self.corpus_hash, self.embedder, embedder_name=cfg.embedder,
                                  chunk_size=cfg.chunk_size, chunk_overlap=cfg.chunk_overlap, kind=cfg.index,
                                  where=f"{self.where}.chunk_size")
            set_search_params(built.index, cfg.index, cfg.ef_search, cfg.nprobe)
        self.index_key, self.index, self.chunks = built.key, built.index, built.chunks
        self.stats = {"index": cfg.index, "embedder": cfg.embedder, "documents": len(docs), "chunks": len(self.chunks),
                      "chunks_embedded": built.embedded, "chunks_reused": len(self.chunks) - built.embedded,
                      "index_from_cache": built.from_cache, "embed_s": built.embed_s, "index_build_s": build.s}
        self.header_cost = backend.count_tokens([CONTEXT_HEADER + "\n\n"])[0]
        self.costs = backend.count_tokens([c.passage + "\n\n" for c in self.chunks])
        self.gold = {}
        if cfg.gold_field is not None:
            self.gold = gold_documents(data.eval, cfg.gold_field, {c.doc_id for c in self.chunks},
                                       f"{self.where}.gold_field")

    def room(self, prompt_tokens: int) -> int:
        """Tokens left for passages in a prompt that takes `prompt_tokens` without them."""
        room = self.backend.context_length - answer_room(self.task, self.backend) - prompt_tokens - self.header_cost
        return min(room, self.config.max_context_tokens) if self.config.max_context_tokens else room

    def reserve(self) -> int:
        """Tokens every prompt leaves for its context: the header and the longest chunk, so the
        best-ranked passage is always shown and no context is ever empty (harness/arm.py fits
        each prompt to leave them)."""
        return self.header_cost + max(self.costs)

    def check_budget(self) -> None:
        """The longest chunk fits the model's context beside the answer, and the context budget."""
        longest = max(self.costs)
        ctx = self.backend.context_length
        if longest > ctx - answer_room(self.task, self.backend) - self.header_cost:
            raise HarnessError(f"{self.where}.chunk_size",
                               f"chunks take up to {longest} model tokens, more than the model's {ctx}-token context "
                               f"holds with the answer; lower chunk_size")
        if self.config.max_context_tokens and self.config.max_context_tokens < longest:
            raise HarnessError(f"{self.where}.max_context_tokens",
                               f"{self.config.max_context_tokens} is less than the longest chunk ({longest} model "
                               f"tokens); raise it or lower chunk_size")

    def retrieve(self, query: str) -> list[tuple[int, float]]:
        """(chunk position, score) of the top_k chunks, best first."""
        q = self.embedder.encode([query], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        scores, ids = self.index.search(q, self.config.top_k)
        hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        if not hits:
            raise HarnessError(self.where, f"the {self.config.index} index returned no passage for '{query[:60]}'; "
                                           f"raise nprobe or ef_search")
        return hits

    def passages(self, example: Example, room: int) -> tuple[str, dict]:
        """The context for one question, packed into `room` tokens, and its trace."""
        hits = self.retrieve(example.input)
        shown = 0
        # Best first; the first passage that does not fit ends the list, so the model never sees a
        # lower-ranked passage in place of a better one. The best one always fits (see reserve).
        for i, _ in hits:
            if self.costs[i] > room:
                break
            room -= self.costs[i]
            shown += 1
        context = CONTEXT_HEADER + "\n\n" + "\n\n".join(self.chunks[i].passage for i, _ in hits[:shown])
        trace = {"retrieved": [{"chunk_id": self.chunks[i].id, "doc_id": self.chunks[i].doc_id,
                                "score": round(s, 4)} for i, s in hits],
                 "n_shown": shown}
        return context, trace

    def record(self):
        return {"index_key": self.index_key, "corpus_hash": self.corpus_hash, "embedder": self.config.embedder}

    def summary(self, examples):
        shown = sum(e["extra"]["n_shown"] for e in examples) / len(examples)
        return {"retrieval": Retrieval(**self.stats, **retrieval_quality(examples, self.gold, self.config.top_k),
                                       passages_shown_mean=shown)}
