"""Retrieval: passages from a knowledge corpus, placed before the question (an arm's `context`).

`Context.prepare` reads the corpus (files, folders, JSONL documents), cuts each document into overlapping
chunks of the embedder's tokens, embeds them with sentence-transformers and indexes them with faiss.
`passages` embeds the question, searches, and packs the best chunks into the model's context
budget; it runs inside the runner's timing, so retrieval is billed in latency like any other work.

- corpus.py: documents, their hash, chunking;
- index.py: the embedder, the vector and index caches under `<HARNESS_CACHE>/rag/`, faiss;
- metrics.py: recall@k and MRR against gold documents;
- strategy.py: the parameters and the context (budget, retrieval, report).
"""
