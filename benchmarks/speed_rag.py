"""RAG speed: embedding throughput, faiss search latency at 10k and 100k chunks, and what a rerun
of the shipped elements task costs.

1. Embedding: the packaged all-MiniLM-L6-v2 encodes the real chunks of the elements corpus (the
   task's chunking), batch 64, after one warm-up batch; chunks/s.
2. Search: one query at a time (as `harness compare` searches), p50/p95 ms over 500 queries, for
   the exact index and the two approximate ones, at 10k and 100k vectors. The vectors are
   synthetic (384-d like MiniLM's, 2,000 normalised Gaussian cluster centres plus noise); the
   queries are perturbed copies of stored vectors, and recall@10 is against the exact index.
3. Rerun: the rag strategy's prepare on the elements task twice with an empty cache: the first
   embeds every chunk, the second none.

    .venv/bin/python benchmarks/speed_rag.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from harness.measure import timer

TASK = Path(__file__).parent / "tasks" / "elements.yaml"
DIM, QUERIES, K = 384, 500, 10


def embedding_throughput() -> None:
    from harness.task import load_task
    from strategies.rag.corpus import chunk_documents, read_corpus
    from strategies.rag.index import load_embedder

    task = load_task(TASK)
    cfg = task.arms["rag"].context.config
    model = load_embedder(cfg.embedder, TASK.parent, "speed_rag")
    chunks = chunk_documents(read_corpus(cfg.corpus, TASK.parent), model.tokenizer, cfg.chunk_size, cfg.chunk_overlap)
    passages = [c.passage for c in chunks]
    model.encode(passages[:64], batch_size=64)
    with timer() as elapsed:
        model.encode(passages, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    print(f"embedding: {len(passages)} real chunks ({cfg.chunk_size} tokens, {cfg.chunk_overlap} overlap) "
          f"in {elapsed.s:.1f} s = {len(passages) / elapsed.s:.0f} chunks/s")


def synthetic(n: int, rng):
    import numpy as np

    centres = rng.standard_normal((2000, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def search_latency(n: int) -> None:
    import faiss
    import numpy as np

    from strategies.rag.index import build_index

    rng = np.random.default_rng(0)
    vectors = synthetic(n, rng)
    queries = vectors[rng.integers(0, n, QUERIES)] + 0.1 * rng.standard_normal((QUERIES, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = None
    for kind, params in (("flat", ""), ("hnsw", "efSearch=64"), ("ivf", "nprobe=16")):
        with timer() as build:
            index = build_index(vectors, kind)
        faiss.ParameterSpace().set_index_parameters(index, params)
        times, found = [], []
        for q in queries:
            with timer() as search:
                _, ids = index.search(q[None], K)
            times.append(search.ms)
            found.append(ids[0])
        if exact is None:
            exact = found
        recall = statistics.mean(len(set(f) & set(e)) / K for f, e in zip(found, exact))
        p50, p95 = np.percentile(times, [50, 95])
        print(f"search {n:>7,} chunks {kind:>4} {params or 'exact':>11}: p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  "
              f"recall@{K} {recall:.3f}  build {build.s:5.1f} s")


def rerun() -> None:
    from harness.arm import build
    from harness.data import load_data
    from harness.registry import load_backend
    from harness.task import load_task

    task = load_task(TASK)
    data = load_data(task)
    backend = load_backend(task.config.model)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HARNESS_CACHE"] = tmp
        for run in ("first", "second"):
            strategy = build(task.arms["rag"], task)
            with timer() as prepared:
                strategy.prepare(data, backend)
            s = strategy.context.stats
            print(f"elements task, {run} run: {s['chunks_embedded']} of {s['chunks']} chunks embedded, "
                  f"index {'loaded from cache' if s['index_from_cache'] else 'built'}, "
                  f"prepare {prepared.s:.1f} s (embedding {s['embed_s']:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    import torch

    print(f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    embedding_throughput()
    for n in args.sizes:
        search_latency(n)
    rerun()


if __name__ == "__main__":
    main()
