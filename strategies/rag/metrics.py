"""Retrieval quality against gold documents: recall@k and MRR, from an eval column naming the
document(s) that answer each question."""

from __future__ import annotations

from typing import Any

from harness.errors import HarnessError


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


def gold_documents(examples, field: str, corpus_ids: set[str], where: str) -> dict[str, set[str]]:
    """Gold document ids by eval example id, for the examples that name any. Checked before
    evaluation: a misspelt column or id would otherwise score as a retrieval miss."""
    if not any(field in ex.row for ex in examples):
        raise HarnessError(where, f"'{field}' is not a column of the eval data")
    gold = {ex.id: ids for ex in examples if (ids := _gold_ids(ex.row.get(field)))}
    unknown = sorted({d for ids in gold.values() for d in ids} - corpus_ids)
    if unknown:
        raise HarnessError(where, f"{len(unknown)} gold document id(s) are not in the corpus: {', '.join(unknown[:5])}")
    return gold


def retrieval_quality(examples: list[dict[str, Any]], gold: dict[str, set[str]], k: int) -> dict[str, Any]:
    """Mean recall@k and MRR over the stored examples that have gold documents; empty when none has."""
    scored = [retrieval_scores([h["doc_id"] for h in e["extra"]["retrieved"]], gold[e["example_id"]], k)
              for e in examples if e["example_id"] in gold]
    if not scored:
        return {}
    return {"k": k, "n_with_gold": len(scored),
            "recall_at_k": sum(r for r, _ in scored) / len(scored),
            "mrr": sum(m for _, m in scored) / len(scored)}
