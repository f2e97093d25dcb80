"""RAG: corpus reading, chunking, the embedding and index caches, the context budget, retrieval
metrics, bad input, and `harness compare` end to end. The generator is the tiny model built in
conftest; the embedder is the real packaged MiniLM (small and fast enough)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.arm import build
from harness.compare import compare
from harness.data import load_data
from harness.errors import HarnessError
from harness.prompting import answer_room, render
from harness.registry import load_backend
from harness.store import Store
from harness.task import load_task
from strategies.rag.corpus import Document, chunk_documents, read_corpus
from strategies.rag.index import build_index, embed_texts
from strategies.rag.metrics import retrieval_scores
from tests.conftest import WORDS, write_jsonl

ELEMENTS = Path(__file__).parent.parent / "benchmarks" / "tasks" / "elements.yaml"

FACTS = {
    "france": "the capital city of france is paris . paris is on the river .",
    "germany": "the capital city of germany is berlin . berlin has one famous wall .",
    "italy": "the capital city of italy is rome . rome is an old city .",
    "spain": "the capital city of spain is madrid . madrid is in the middle of spain .",
    "portugal": "the capital city of portugal is lisbon . lisbon is on the sea .",
}
QA = [{"id": f"q-{c}", "text": f"what is the capital of {c} ?", "label": a, "doc": c}
      for c, a in [("france", "paris"), ("germany", "berlin"), ("italy", "rome"), ("spain", "madrid"),
                   ("portugal", "lisbon")]]


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    # Empty index and vector caches for the test (the real-model test keeps the shared cache, where
    # the default model is already converted).
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


def write_corpus(folder: Path, facts: dict[str, str] = FACTS) -> Path:
    return write_jsonl(folder / "corpus.jsonl", [{"id": k, "title": k, "text": v} for k, v in facts.items()])


@pytest.fixture
def rag_task(make_task, tmp_path, private_cache):
    """A short-answer task over the five capitals, with a rag strategy over a JSONL corpus."""

    def make(rag: dict | None = None, **overrides):
        write_corpus(tmp_path)
        params = {"corpus": "corpus.jsonl", "chunk_size": 16, "chunk_overlap": 4, "top_k": 2, "gold_field": "doc",
                  **(rag or {})}
        fields = dict(type="short_answer", labels=None, train=QA[:2], eval=QA[2:],
                      strategies={"zero_shot": {}, "rag": params}, limits={"batch_size": 2, "max_new_tokens": 3})
        return make_task(**{**fields, **overrides})

    return make


def prepared(path: Path, backend=None):
    task = load_task(path)
    data = load_data(task)
    strategy = build(task.arms["rag"], task)
    strategy.prepare(data, backend or load_backend(str(task.config.model)))
    return strategy, data


# -- corpus and chunking --------------------------------------------------------------------------

def test_files_folders_and_jsonl_make_documents(tmp_path):
    (tmp_path / "notes" / "deep").mkdir(parents=True)
    (tmp_path / "notes" / "a.txt").write_text("alpha text", encoding="utf-8")
    (tmp_path / "notes" / "deep" / "b.md").write_text("beta text", encoding="utf-8")
    (tmp_path / "notes" / ".hidden").write_text("skipped", encoding="utf-8")
    (tmp_path / "single.txt").write_text("gamma text", encoding="utf-8")
    write_jsonl(tmp_path / "docs.jsonl", [{"id": "d1", "text": "delta", "title": "D", "source": "s"}])
    docs = read_corpus(["notes", "single.txt", "docs.jsonl"], tmp_path)
    assert [(d.id, d.title) for d in docs] == [("a.txt", "a"), ("deep/b.md", "b"), ("single.txt", "single"),
                                                ("d1", "D")]
    assert docs[-1].source == "s"


def test_chunks_overlap_and_keep_their_document(embedder):
    text = " ".join(w.capitalize() for w in WORDS)  # common words, one token each
    chunks = chunk_documents([Document("doc-a", text, "A"), Document("doc-b", "short one", None)],
                             embedder.tokenizer, size=20, overlap=5)
    a = [c for c in chunks if c.doc_id == "doc-a"]
    assert [c.id for c in a] == [f"doc-a#{i}" for i in range(len(a))] and len(a) > 2
    ids = [embedder.tokenizer(c.text, add_special_tokens=False)["input_ids"] for c in a]
    assert all(len(i) <= 20 for i in ids)
    for prev, nxt in zip(ids, ids[1:]):
        assert prev[-5:] == nxt[:5]  # consecutive chunks share exactly `overlap` tokens
    # Cut from the original text, so casing and spacing survive an uncased tokenizer.
    assert all(c.text in text for c in a) and a[-1].text.endswith(WORDS[-1].capitalize())
    assert chunks[-1].id == "doc-b#0" and chunks[-1].passage == "short one"
    assert a[0].passage.startswith(f"[A] {WORDS[0].capitalize()}")


# -- caches -----------------------------------------------------------------------------------------

def test_rerun_embeds_nothing_and_changed_corpus_reembeds_only_changed_chunks(rag_task, tmp_path, tiny_model_dir):
    backend = load_backend(str(tiny_model_dir))
    first = prepared(rag_task(), backend)[0].context
    n = first.stats["chunks"]
    assert first.stats["chunks_embedded"] == n and not first.stats["index_from_cache"]

    again = prepared(rag_task(), backend)[0].context
    assert again.stats["chunks_embedded"] == 0 and again.stats["index_from_cache"]

    # Same corpus, another index type: vectors come from the cache, nothing is embedded.
    hnsw = prepared(rag_task({"index": "hnsw"}), backend)[0].context
    assert hnsw.stats["chunks_embedded"] == 0 and not hnsw.stats["index_from_cache"]

    changed = dict(FACTS, spain="the capital city of spain is madrid . it is sunny .")
    write_corpus(tmp_path, changed)
    path = tmp_path / "task.yaml"
    edited = prepared(path, backend)[0].context
    spain_chunks = [c for c in edited.chunks if c.doc_id == "spain"]
    assert edited.stats["chunks_embedded"] == len(spain_chunks) > 0
    assert edited.stats["chunks_reused"] == edited.stats["chunks"] - len(spain_chunks)


def test_exact_and_approximate_indexes_find_the_same_neighbours(embedder, private_cache):
    texts = [f"{topic} number {i}" for topic in ("football match", "stock market", "mobile phone", "rock music")
             for i in range(60)]
    chunks = chunk_documents([Document(str(i), t) for i, t in enumerate(texts)], embedder.tokenizer, 32, 0)
    vectors, _ = embed_texts(embedder, "all-MiniLM-L6-v2", [c.passage for c in chunks])
    query = embedder.encode(["shares on the stock market"], normalize_embeddings=True)
    import faiss

    results = {}
    # IVF on 240 vectors makes 6 clusters; searching 2 of them is a real approximation.
    for kind, params in (("flat", ""), ("hnsw", "efSearch=64"), ("ivf", "nprobe=2")):
        index = build_index(vectors, kind)
        faiss.ParameterSpace().set_index_parameters(index, params)
        _, ids = index.search(query, 5)
        results[kind] = [texts[i] for i in ids[0]]
    assert all(t.startswith("stock market") for t in results["flat"])
    assert results["hnsw"] == results["flat"]
    assert all(t.startswith("stock market") for t in results["ivf"])


# -- budget -------------------------------------------------------------------------------------------

def test_passages_are_cut_to_the_budget_best_first(rag_task, tiny_model_dir):
    strategy, data = prepared(rag_task({"top_k": 5, "max_context_tokens": 40}))
    example = data.eval[0]
    prompted = strategy.messages(example)
    turns, trace = prompted.messages, prompted.trace
    assert len(trace["retrieved"]) == 5 and 1 <= trace["n_shown"] < 5
    shown_ids = {h["chunk_id"] for h in trace["retrieved"][:trace["n_shown"]]}
    shown = [c for c in strategy.context.chunks if c.id in shown_ids]
    assert sum(strategy.context.costs[strategy.context.chunks.index(c)] for c in shown) <= 40
    assert all(c.text in turns[-1]["content"] for c in shown)
    first_hidden = trace["retrieved"][trace["n_shown"]]["chunk_id"]
    hidden = next(c for c in strategy.context.chunks if c.id == first_hidden)
    assert hidden.text not in turns[-1]["content"]
    # The scores are cosine similarities, best first.
    scores = [h["score"] for h in trace["retrieved"]]
    assert scores == sorted(scores, reverse=True)


# -- retrieval metrics ----------------------------------------------------------------------------------

def test_recall_and_mrr_on_a_constructed_case():
    # Document ranks: b (1), a (2), c (3); two chunks of b count once.
    assert retrieval_scores(["b", "b", "a", "c"], {"a"}, k=4) == (1.0, 0.5)
    assert retrieval_scores(["b", "b", "a", "c"], {"a"}, k=2) == (0.0, 0.0)
    assert retrieval_scores(["b", "a", "c"], {"a", "z"}, k=3) == (0.5, 0.5)
    assert retrieval_scores(["c", "a"], {"c"}, k=1) == (1.0, 1.0)


# -- bad input ------------------------------------------------------------------------------------------

def expect(path: Path, *fragments, backend=None):
    with pytest.raises(HarnessError) as err:
        prepared(path, backend)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_empty_corpus(rag_task, tmp_path):
    path = rag_task({"corpus": "empty"})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("  \n", encoding="utf-8")
    expect(path, "strategies.rag.corpus", "the corpus is empty")


def test_binary_and_non_utf8_files(rag_task, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    expect(rag_task({"corpus": "docs"}), "image.png", "binary file")
    (tmp_path / "docs" / "image.png").unlink()
    (tmp_path / "docs" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    expect(rag_task({"corpus": "docs"}), "latin1.txt", "not UTF-8")


def test_missing_corpus_and_bad_jsonl_rows(rag_task, tmp_path):
    expect(rag_task({"corpus": "nowhere.jsonl"}), "strategies.rag.corpus: nowhere.jsonl", "not found")
    write_jsonl(tmp_path / "rows.jsonl", [{"id": "a", "text": "fine"}, {"id": "b"}])
    expect(rag_task({"corpus": "rows.jsonl"}), "rows.jsonl: line 2", "'text'")


def test_chunk_larger_than_the_embedder_window(rag_task, tmp_path):
    # MiniLM embeds 256 tokens at most: a 300-token chunk would lose its tail silently.
    path = rag_task({"corpus": "long.txt", "chunk_size": 300, "chunk_overlap": 0})
    (tmp_path / "long.txt").write_text("word " * 400, encoding="utf-8")
    expect(path, "strategies.rag.chunk_size", "256-token window")


def test_chunk_larger_than_the_model_context(rag_task, tmp_path, tiny_model_dir):
    # The same tiny model with a 20-token context: no 16-token chunk fits beside the answer room.
    import shutil

    short = tmp_path / "short-model"
    shutil.copytree(tiny_model_dir, short)
    config = json.loads((short / "config.json").read_text())
    (short / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 20}))
    expect(rag_task(model=str(short)), "strategies.rag.chunk_size", "model tokens", "20-token context")


LONG_Q = dict(QA[2], text="what is the capital of italy ? " + "the " * 500)


def test_question_longer_than_the_budget_is_refused_when_asked(rag_task, make_task):
    prompt = {**yaml.safe_load(make_task().read_text())["prompt"], "overflow": "error"}
    expect(rag_task(eval=[LONG_Q, QA[3]], prompt=prompt), "prompt.overflow", "example 'q-italy'",
           "512-token context leaves", "max_input_tokens")


def test_question_longer_than_the_budget_is_cut_to_leave_the_best_passage(rag_task):
    strategy, data = prepared(rag_task(eval=[LONG_Q, QA[3]]))
    long, short = (strategy.messages(ex) for ex in data.eval)
    assert "input_truncated_to" not in short.trace
    assert long.trace["n_shown"] >= 1 and long.trace["input_truncated_to"] < 500
    prompt = render(strategy.task, strategy.backend, long.messages)
    assert prompt.n_tokens + answer_room(strategy.task, strategy.backend) <= strategy.backend.context_length


def test_budget_smaller_than_a_chunk(rag_task):
    expect(rag_task({"max_context_tokens": 3}), "strategies.rag.max_context_tokens", "less than the longest chunk")


def test_unknown_gold_documents(rag_task, tmp_path):
    bad = [dict(QA[2], doc="atlantis"), QA[3]]
    expect(rag_task(eval=bad), "strategies.rag.gold_field", "atlantis")


def test_bad_parameter_is_a_config_error(rag_task, capsys, tmp_path):
    from harness.cli import main

    path = rag_task({"chunk_overlap": 16})
    assert main(["compare", str(path), "--store", str(tmp_path / "s.sqlite"), "--no-progress"]) == 2
    assert "strategies.rag.chunk_overlap: must be smaller than chunk_size" in capsys.readouterr().err


# -- end to end -------------------------------------------------------------------------------------------

def test_compare_with_rag_stores_retrieved_ids_and_reuses(rag_task, tmp_path):
    path, store_path = rag_task(), tmp_path / "store.sqlite"
    report = compare(path, store_path=store_path, progress=False)
    zero, rag = report.strategies
    assert rag.name == "rag" and set(rag.model_dump()) >= set(zero.model_dump())
    r = rag.retrieval
    assert r.chunks == r.chunks_embedded > 0 and r.index_build_s > 0
    # Each question names its country, so MiniLM finds the right document first.
    assert r.recall_at_k == 1.0 and r.mrr == 1.0 and r.n_with_gold == 3
    assert rag.tokens.prompt_mean > zero.tokens.prompt_mean + 10

    rows = Store(store_path).examples(rag.run_id)
    assert len(rows) == 3
    for row in rows:
        hits = row["extra"]["retrieved"]
        assert hits[0]["doc_id"] == row["example_id"].removeprefix("q-")
        assert hits[0]["chunk_id"].startswith(hits[0]["doc_id"] + "#") and row["extra"]["n_shown"] >= 1

    again = compare(path, store_path=store_path, progress=False)
    assert all(s.reused for s in again.strategies)

    # An edited corpus is a new rag run (the run key holds the corpus hash); zero-shot is reused.
    write_corpus(tmp_path, dict(FACTS, italy="the capital city of italy is rome ."))
    edited = compare(path, store_path=store_path, progress=False)
    assert [s.reused for s in edited.strategies] == [True, False]
    assert 0 < edited.strategies[1].retrieval.chunks_embedded < r.chunks


def test_failed_prepare_leaves_no_run(rag_task, tmp_path):
    path, store_path = rag_task({"max_context_tokens": 3}), tmp_path / "store.sqlite"
    with pytest.raises(HarnessError):
        compare(path, store_path=store_path, strategies=["rag"], progress=False)
    assert Store(store_path).runs_with_counts() == []


@pytest.mark.integration
def test_rag_beats_zero_shot_on_the_elements_task(tmp_path):
    # Greedy decoding on a fixed seeded slice: deterministic. 60 examples: on fewer, zero-shot's
    # interval (a few lucky answers) is as wide as the gain.
    report = compare(ELEMENTS, strategies=["zero_shot", "rag"], limit=60, store_path=tmp_path / "s.sqlite",
                     progress=False)
    zero, rag = (s.quality for s in report.strategies)
    assert rag.value - zero.value > zero.ci_high - zero.ci_low
    assert report.strategies[1].retrieval.recall_at_k > 0.9


# -- the shipped elements task ------------------------------------------------------------------------------

def test_elements_data_rebuilds_identically_and_answers_are_in_the_corpus(tmp_path):
    import importlib.metadata
    import importlib.util

    bench = ELEMENTS.parent.parent
    spec = importlib.util.spec_from_file_location("build_elements", bench / "build_elements.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    if importlib.metadata.version("mendeleev") != builder.SOURCE[1]:
        pytest.skip("the shipped files come from another mendeleev release")
    builder.main(tmp_path)
    shipped = bench / "data" / "elements"
    for name in ("corpus.jsonl", "train.jsonl", "eval.jsonl"):
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), name

    rows = {s: [json.loads(x) for x in (shipped / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()]
            for s in ("corpus", "train", "eval")}
    docs = {d["id"]: d["text"] for d in rows["corpus"]}
    assert len(docs) == 118
    for q in rows["train"] + rows["eval"]:
        assert q["answer"] in docs[q["doc_id"]], q["id"]
    # Whole elements on one side: few-shot demonstrations never show a fact about an eval element.
    assert not {q["element"] for q in rows["train"]} & {q["element"] for q in rows["eval"]}
