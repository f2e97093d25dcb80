"""Arms made of axes (model, weights, context, demos): shorthands are their explicit forms, an A/A
comparison is exactly null, similar demonstrations are the nearest train examples, retrieval and
demonstrations share one prompt, retrieval-augmented LoRA trains on its passages, full fine-tuning
trains every weight, and bad arms fail as one line naming file, arm and field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from harness.arm import build
from harness.armspec import parameters, parse_arm, with_param
from harness.checkpoints import inspect, load
from harness.cli import main
from harness.compare import compare
from harness.config import PromptConfig
from harness.data import load_data
from harness.errors import HarnessError
from harness.prompting import build_messages, user_turn
from harness.registry import load_backend
from harness.store import Store
from harness.task import load_task
from strategies.demos import select_demos
from strategies.finetune import weights_dir
from strategies.rag.strategy import CONTEXT_HEADER
from tests.conftest import TOPICS, topic_rows, write_jsonl
from tests.test_rag import FACTS, QA, write_corpus

# Two steps: the LoRA test looks at what is trained on and where it is kept, not at what is learned.
QUICK_LORA = {"max_steps": 2, "eval_steps": 1, "learning_rate": 0.01, "batch_size": 4}
WHERE = "tasks/x.yaml: strategies"
MODEL = "some-model"

# The capitals corpus and questions of the retrieval tests.
CAPITALS = {q["doc"]: q["label"] for q in QA}
RETRIEVAL = {"corpus": "corpus.jsonl", "chunk_size": 16, "chunk_overlap": 4, "top_k": 2}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    # Adapters, vectors and indexes of this test only.
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def capitals_task(make_task, tmp_path):
    """A short-answer task over the five capitals with a JSONL corpus beside it."""

    def make(strategies: dict, **overrides):
        write_corpus(tmp_path)
        fields = dict(type="short_answer", labels=None, train=QA[:2], eval=QA[2:], strategies=strategies,
                      limits={"batch_size": 2, "max_new_tokens": 3})
        return make_task(**{**fields, **overrides})

    return make


# The task settings an arm is parsed against.
TASK = SimpleNamespace(model=MODEL, type="short_answer", prompt=PromptConfig(template="{{question}}"))


def arm(name, params=None, task=TASK):
    return parse_arm(name, params if params is not None else {}, task, WHERE)


# -- 1. parsing: shorthands are their explicit forms ------------------------------------------------

def test_few_shot_is_demos():
    short = arm("few_shot", {"k": 3})
    explicit = arm("x", {"demos": {"k": 3}})
    assert short.axes() == explicit.axes() == {
        "model": MODEL, "weights": "base", "context": None,
        "demos": {"k": 3, "select": "balanced", "embedder": "all-MiniLM-L6-v2"}}
    assert arm("few_shot", {"k": 3, "balanced": False}).axes() == \
        arm("x", {"demos": {"k": 3, "select": "random"}}).axes()
    # few_shot's defaults are demos' defaults.
    assert arm("few_shot").axes() == arm("x", {"demos": {}}).axes()
    assert arm("few_shot", {"k": 3}).axes() != arm("x", {"demos": {"k": 3, "select": "similar"}}).axes()
    assert explicit.describe(TASK.prompt) == "base + 3 balanced demos"


def test_rag_is_retrieval_context():
    params = {"corpus": ["docs"], "top_k": 5, "chunk_size": 64, "chunk_overlap": 8}
    short = arm("rag", params)
    explicit = arm("y", {"context": {"retrieval": params}})
    assert short.axes() == explicit.axes()
    assert short.axes()["context"]["retrieval"]["top_k"] == 5 and short.axes()["weights"] == "base"
    assert short.axes()["demos"] is None
    # A single corpus path is the same as a list of one.
    assert arm("rag", {**params, "corpus": "docs"}).axes() == short.axes()
    assert arm("rag", {**params, "top_k": 4}).axes() != short.axes()
    assert explicit.describe(TASK.prompt) == "base + retrieval (top 5)"


def test_lora_and_checkpoint_are_weights():
    short = arm("lora", {"r": 4, "max_steps": 7})
    explicit = arm("z", {"weights": {"lora": {"r": 4, "max_steps": 7}}})
    assert short.axes() == explicit.axes()
    assert short.axes()["weights"]["lora"]["r"] == 4 and short.axes()["weights"]["lora"]["max_steps"] == 7
    assert short.weights_method == explicit.weights_method == "lora"
    # A bare method name is that method with its defaults.
    assert arm("z", {"weights": "lora"}).axes() == arm("lora").axes()
    with pytest.raises(HarnessError) as err:  # full fine-tuning has no rank
        arm("z", {"weights": {"full": {"r": 4}}})
    assert err.value.where == f"{WHERE}.z.weights.full.r"
    assert arm("z", {"weights": {"full": {"max_steps": 7}}}).axes() != arm("lora", {"max_steps": 7}).axes()
    checkpoint = arm("c", {"weights": {"checkpoint": {"path": "ck"}}})
    assert arm("checkpoint", {"path": "ck"}).axes() == checkpoint.axes() == {
        "model": MODEL, "weights": {"checkpoint": {"path": "ck"}}, "context": None, "demos": None}


def test_no_axes_and_zero_demos_are_zero_shot():
    zero = arm("zero_shot").axes()
    assert zero == {"model": MODEL, "weights": "base", "context": None, "demos": None}
    assert arm("again", {}).axes() == zero
    assert arm("again", {"weights": "base", "model": MODEL}).axes() == zero
    assert arm("x", {"demos": {"k": 0}}).axes() == zero
    assert arm("x", {"demos": {"k": 0, "select": "similar"}}).axes() == zero
    assert arm("few_shot", {"k": 0}).axes() == zero
    assert arm("x", {"demos": {"k": 1}}).axes() != zero
    assert arm("x", {"model": "other-model"}).axes() == {**zero, "model": "other-model"}
    assert arm("again", {}).describe(TASK.prompt) == "base"


def test_combined_arm_describe_and_parameters():
    spec = arm("combo", {"weights": {"lora": {"r": 2}}, "context": {"retrieval": {"corpus": "docs", "top_k": 4}},
                         "demos": {"k": 2, "select": "similar"}})
    assert spec.describe(TASK.prompt) == "lora + retrieval (top 4) + 2 similar demos"
    names = parameters(spec)
    assert {"demos.k", "demos.select", "weights.lora.r", "weights.lora.train_fraction",
            "context.retrieval.top_k"} <= set(names)
    assert not any(n.startswith("weights.full") for n in names)
    assert parameters(arm("few_shot")) == ["k", "balanced"]
    # The parameters as written, validated: what a learning curve varies.
    assert spec.params["demos"] == {"k": 2, "select": "similar", "embedder": "all-MiniLM-L6-v2"}
    assert with_param(spec.params, "demos.k", 0)["demos"]["k"] == 0
    assert with_param({}, "weights.lora.r", 4) == {"weights": {"lora": {"r": 4}}}


def test_prompt_axis_keeps_only_what_differs_from_the_task():
    zero = arm("zero_shot").axes()
    # Restating the task's own settings is the task's prompt: the same run.
    assert arm("same", {"prompt": {"format": "chat", "template": "{{question}}"}}).axes() == zero
    raw = arm("raw", {"prompt": {"format": "raw", "target_delimiter": " "}})
    assert raw.axes() == {**zero, "prompt": {"format": "raw"}}
    assert raw.params == {"prompt": {"format": "raw"}}
    assert raw.describe(TASK.prompt.model_copy(update=raw.prompt)) == "base, raw prompt"
    labelled = SimpleNamespace(**{**vars(TASK), "type": "classification"})
    calibrated = arm("cal", {"demos": {"k": 2}, "prompt": {"calibrate": True}}, task=labelled)
    described = calibrated.describe(TASK.prompt.model_copy(update=calibrated.prompt))
    assert described == "base + 2 balanced demos, calibrated"
    assert "prompt.calibrate" in parameters(calibrated)


@pytest.mark.parametrize("prompt, field, fragment", [
    ({"calibrate": True}, "prompt.calibrate", "this task is 'short_answer'"),
    ({"format": "json"}, "prompt.format", "'chat' or 'raw'"),
    ({"template": "{{ x"}, "prompt.template", "not valid Jinja2"),
    ({"nosuch": 1}, "prompt.nosuch", "unknown field"),
])
def test_bad_prompt_axis(prompt, field, fragment):
    with pytest.raises(HarnessError) as e:
        arm("x", {"prompt": prompt})
    assert e.value.where.endswith(f"strategies.x.{field}") and fragment in e.value.message, e.value


# -- 2. A/A: the same configuration under two names ---------------------------------------------------

def test_a_a_comparison_is_exactly_null(make_task, tmp_path):
    path = make_task(strategies={"zero_shot": {}, "again": {}})
    store_path = tmp_path / "s.sqlite"
    report = compare(path, store_path=store_path, progress=False)
    zero, again = report.strategies
    assert (zero.name, again.name) == ("zero_shot", "again")
    assert zero.run_id == again.run_id
    assert zero.reused is False and again.reused is True
    assert zero.axes == again.axes
    pair = report.comparisons.pair("zero_shot", "again")
    assert pair.diff == 0.0 and pair.ci_low == 0.0 and pair.ci_high == 0.0
    assert pair.only_a == 0 and pair.only_b == 0 and pair.p_value == 1.0
    assert pair.significant is False and pair.n == 12
    assert report.recommendation.kind != "fine_tune", report.recommendation.verdict
    store = Store(store_path)
    try:
        assert len(store.runs_with_counts()) == 1
    finally:
        store.close()


def test_a_a_comparison_with_force_keeps_both_rows_on_one_run(make_task, tmp_path):
    # Another arm between the two, so the re-inserted run cannot take the deleted run's id.
    path = make_task(strategies={"again": {}, "few_shot": {"k": 2}, "zero_shot": {}})
    store_path = tmp_path / "s.sqlite"
    report = compare(path, store_path=store_path, progress=False, force=True)
    again, _, zero = report.strategies
    store = Store(store_path)
    try:
        stored = {r["id"] for r in store.runs_with_counts()}
    finally:
        store.close()
    assert {r.run_id for r in report.strategies} <= stored
    assert again.run_id == zero.run_id
    pair = report.comparisons.pair("again", "zero_shot")
    assert pair.n == 12 and pair.diff == 0.0


# -- 3. demonstrations: similar, random, balanced ---------------------------------------------------------

def _prepared(path: Path, name: str, backend=None):
    task = load_task(path)
    data = load_data(task)
    strategy = build(task.arms[name], task)
    backend = backend or load_backend(task.config.model)
    strategy.prepare(data, backend)
    return strategy, data, backend


def test_similar_demos_are_the_nearest_train_examples(make_task, embedder):
    path = make_task(train=topic_rows(4), eval=topic_rows(2, offset=10),
                     strategies={"sim": {"demos": {"k": 3, "select": "similar"}}})
    strategy, data, _ = _prepared(path, "sim")
    train = list(data.train)
    vectors = embedder.encode([ex.input for ex in train], normalize_embeddings=True, convert_to_numpy=True)
    chosen = {}
    for ex in data.eval:
        prompted = strategy.messages(ex)
        ids = prompted.trace["demo_ids"]
        q = embedder.encode([ex.input], normalize_embeddings=True, convert_to_numpy=True)[0]
        cosine = vectors @ q
        nearest = np.argsort(-cosine, kind="stable")[:3]
        assert ids == [train[i].id for i in reversed(nearest)], (ex.id, ids, cosine)
        # Nearest last, next to the query.
        sims = {train[i].id: cosine[i] for i in range(len(train))}
        assert [sims[i] for i in ids] == sorted(sims[i] for i in ids)
        # The prompt shows exactly those examples, in that order, each followed by its answer.
        by_id = {t.id: t for t in train}
        turns = prompted.messages
        assert [t["role"] for t in turns] == ["system"] + ["user", "assistant"] * 3 + ["user"]
        for j, demo_id in enumerate(ids):
            assert ex.input not in turns[1 + 2 * j]["content"]
            assert by_id[demo_id].input in turns[1 + 2 * j]["content"]
            assert turns[2 + 2 * j]["content"] == by_id[demo_id].target
        assert ex.input in turns[-1]["content"]
        chosen[ex.id] = ids
    # Per query: a sport article and a tech article do not get the same demonstrations.
    assert len({tuple(ids) for ids in chosen.values()}) > 1
    assert chosen["sport-10"] != chosen["tech-10"]
    # Chosen per query, so recorded per example, not for the run.
    assert "demo_ids" not in strategy.record()
    assert strategy.record()["axes"]["demos"]["select"] == "similar"


def test_similar_demos_embed_the_train_inputs_once(make_task, monkeypatch):
    # The train inputs' vectors are kept in the vector cache: a second run embeds only its queries.
    from sentence_transformers import SentenceTransformer

    path = make_task(train=topic_rows(4), eval=topic_rows(2, offset=10),
                     strategies={"sim": {"demos": {"k": 3, "select": "similar"}}})
    encoded, encode = [], SentenceTransformer.encode
    monkeypatch.setattr(SentenceTransformer, "encode",
                        lambda self, texts, **kw: encoded.append(len(texts)) or encode(self, texts, **kw))
    first, data, backend = _prepared(path, "sim")
    picked = {ex.id: first.messages(ex).trace["demo_ids"] for ex in data.eval}
    assert len(data.train) in encoded
    encoded.clear()
    again, _, _ = _prepared(path, "sim", backend)
    assert {ex.id: again.messages(ex).trace["demo_ids"] for ex in data.eval} == picked
    assert encoded and set(encoded) == {1}


def test_random_and_balanced_demos_are_fixed_and_recorded(make_task):
    path = make_task(train=topic_rows(4), eval=topic_rows(2, offset=10),
                     strategies={"rnd": {"demos": {"k": 3, "select": "random"}},
                                 "bal": {"demos": {"k": 3, "select": "balanced"}}})
    rnd, data, backend = _prepared(path, "rnd")
    bal, _, _ = _prepared(path, "bal", backend)
    task = load_task(path)
    for strategy, by_label in ((rnd, False), (bal, True)):
        recorded = strategy.record()["demo_ids"]
        assert len(recorded) == 3
        assert recorded == [d.id for d in select_demos(data.train, 3, task.config.seed, by_label)]
        prompts = [strategy.messages(ex) for ex in data.eval]
        for p in prompts:
            assert "demo_ids" not in p.trace
            # The same demonstrations before every query.
            assert p.messages[:-1] == prompts[0].messages[:-1]
            shown = [t["content"] for t in p.messages if t["role"] == "assistant"]
            assert shown == [next(d for d in data.train if d.id == i).target for i in recorded]
    # Balanced: one of each of the three topics.
    labels = {next(d for d in data.train if d.id == i).target for i in bal.record()["demo_ids"]}
    assert labels == set(TOPICS)


def test_similar_demo_ids_are_stored_with_each_example(make_task, tmp_path):
    path = make_task(train=topic_rows(4), eval=topic_rows(2, offset=10),
                     strategies={"sim": {"demos": {"k": 2, "select": "similar"}},
                                 "rnd": {"demos": {"k": 2, "select": "random"}}})
    store_path = tmp_path / "s.sqlite"
    report = compare(path, store_path=store_path, progress=False)
    sim, rnd = report.strategies
    assert sim.made_of == "base + 2 similar demos" and rnd.made_of == "base + 2 random demos"
    store = Store(store_path)
    try:
        sim_examples = store.examples(sim.run_id)
        assert len(sim_examples) == 6
        train_ids = {r["id"] for r in topic_rows(4)}
        for e in sim_examples:
            assert len(e["extra"]["demo_ids"]) == 2 and set(e["extra"]["demo_ids"]) <= train_ids
        assert "demo_ids" not in store.run(sim.run_id)["strategy_record"]
        recorded = store.run(rnd.run_id)["strategy_record"]["demo_ids"]
        assert len(recorded) == 2 and set(recorded) <= train_ids
        assert all("demo_ids" not in e["extra"] for e in store.examples(rnd.run_id))
    finally:
        store.close()


# -- 4. retrieval and demonstrations in one prompt ------------------------------------------------------------

def _short_context_model(src: Path, dst: Path, context: int) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**config, "max_position_embeddings": context}))
    return dst


def test_retrieval_and_demos_share_the_prompt_and_the_budget(capitals_task, tmp_path, tiny_model_dir):
    retrieval = {**RETRIEVAL, "top_k": 5}
    strategies = {"both": {"context": {"retrieval": retrieval}, "demos": {"k": 2}},
                  "ctx": {"context": {"retrieval": retrieval}}}
    path = capitals_task(strategies)
    task = load_task(path)
    data = load_data(task)
    full = load_backend(str(tiny_model_dir))
    # A context that holds the demonstrated prompt and about two passages: the demonstrations
    # then visibly take room the passages would otherwise have.
    demos = list(data.train)
    prompt = max(full.render(build_messages(task, ex, full, demos=demos)).n_tokens for ex in data.eval)
    header = full.count_tokens([CONTEXT_HEADER + "\n\n"])[0]
    answer = task.config.limits.max_new_tokens
    context = prompt + header + answer + 40
    short = _short_context_model(tiny_model_dir, tmp_path / "short-model", context)
    path = capitals_task(strategies, model=str(short))
    both, data, backend = _prepared(path, "both")
    ctx, _, _ = _prepared(path, "ctx", backend)
    assert backend.context_length == context

    for ex in data.eval:
        prompted = both.messages(ex)
        turns, trace = prompted.messages, prompted.trace
        # System, two solved examples, then the question with its passages.
        assert [t["role"] for t in turns] == ["system", "user", "assistant", "user", "assistant", "user"]
        demo_ids = both.record()["demo_ids"]
        assert sorted(demo_ids) == sorted(d.id for d in data.train)
        by_id = {d.id: d for d in data.train}
        for j, demo_id in enumerate(demo_ids):
            assert turns[1 + 2 * j]["content"] == user_turn(task, by_id[demo_id], backend)
            assert CONTEXT_HEADER not in turns[1 + 2 * j]["content"]
            assert turns[2 + 2 * j]["content"] == by_id[demo_id].target
        last = turns[-1]["content"]
        assert last.startswith(CONTEXT_HEADER + "\n\n") and last.endswith(user_turn(task, ex, backend))
        # The right document comes first and is shown.
        assert trace["retrieved"][0]["doc_id"] == ex.row["doc"]
        assert f"[{ex.row['doc']}] {FACTS[ex.row['doc']]}" in last
        # Passages fill what the demonstrations leave: the prompt and the answer fit the context,
        # one more passage would not.
        n = trace["n_shown"]
        assert 1 <= n < 5
        used = backend.render(turns).n_tokens
        assert used + answer <= context
        chunks = {c.id: c for c in both.context.chunks}
        costs = {c.id: both.context.costs[i] for i, c in enumerate(both.context.chunks)}
        assert used + costs[trace["retrieved"][n]["chunk_id"]] + answer > context
        for hit in trace["retrieved"][:n]:
            assert chunks[hit["chunk_id"]].passage in last
        for hit in trace["retrieved"][n:]:
            assert chunks[hit["chunk_id"]].passage not in last
        # Without demonstrations the same question gets more passages.
        alone = ctx.messages(ex)
        assert alone.trace["n_shown"] > n
        assert [t["role"] for t in alone.messages] == ["system", "user"]


# -- 5. retrieval-augmented LoRA ---------------------------------------------------------------------------------

def _capital_rows() -> tuple[list[dict], list[dict]]:
    """Ten training questions (two phrasings per country) and three eval questions."""
    train = [{"id": f"t{i}-{c}", "text": text.format(c=c), "label": a, "doc": c}
             for c, a in CAPITALS.items()
             for i, text in enumerate(("what is the capital of {c} ?", "which city is the capital of {c} ?"))]
    evaluation = [{"id": f"e-{c}", "text": f"the capital city of {c} is what ?", "label": a, "doc": c}
                  for c, a in list(CAPITALS.items())[:3]]
    return train, evaluation


def test_retrieval_augmented_lora_trains_on_its_passages(capitals_task, monkeypatch):
    import strategies.finetune as finetune

    train, evaluation = _capital_rows()
    rag_lora = {"weights": {"lora": QUICK_LORA}, "context": {"retrieval": RETRIEVAL}, "demos": {"k": 1}}
    path = capitals_task({"rag_lora": rag_lora, "plain": {"weights": {"lora": QUICK_LORA}}}, train=train,
                         eval=evaluation)
    captured: dict[str, str] = {}
    original = finetune._tokenize

    def spy(backend, examples, max_length, prompt, where):
        for ex in examples:
            captured[ex.id] = prompt(ex).text
        return original(backend, examples, max_length, prompt, where)

    monkeypatch.setattr(finetune, "_tokenize", spy)
    task = load_task(path)
    data = load_data(task)
    backend = load_backend(task.config.model)
    strategy = build(task.arms["rag_lora"], task)
    plain = build(task.arms["plain"], task)
    folder = strategy.output_dir(data)
    assert folder != plain.output_dir(data)
    # Plain LoRA keeps the key its adapters always had.
    assert plain.output_dir(data) == weights_dir(task, "lora", task.arms["plain"].weights.config, data.hash)

    adapted = strategy.prepare(data, backend)
    # Every training and validation example, each with its own retrieved passages and no demonstrations.
    assert set(captured) == {r["id"] for r in train}
    for row in train:
        text = captured[row["id"]]
        # The system turn and one user turn: no demonstration.
        assert text.count("<|im_start|>system") == text.count("<|im_start|>user") == 1, text
        content = text.split("<|im_start|>user\n", 1)[1]
        assert content.startswith(CONTEXT_HEADER + "\n\n") and (row["text"] + " topic ?<|im_end|>") in content
        assert f"[{row['doc']}] {FACTS[row['doc']]}" in content, content
    assert (folder / "manifest.json").is_file() and not (plain.output_dir(data) / "manifest.json").exists()
    assert adapted is not backend
    # Served with demonstrations and passages, as the arm says.
    served = strategy.messages(data.eval[0]).messages
    assert len(served) == 4 and served[-1]["content"].startswith(CONTEXT_HEADER)

    # The weights depend on the corpus: an edited one is another folder.
    write_corpus(path.parent, {**FACTS, "italy": "the capital city of italy is rome ."})
    task = load_task(path)
    assert build(task.arms["rag_lora"], task).output_dir(data) != folder
    assert build(task.arms["plain"], task).output_dir(data) == plain.output_dir(data)


# -- 6. full fine-tuning -----------------------------------------------------------------------------------------

def test_full_fine_tuning_trains_every_weight(make_task, tmp_path):
    full = {"max_steps": 6, "eval_steps": 3, "learning_rate": 0.01, "batch_size": 4}
    # A small probe: forgetting is measured on the base and on the trained weights.
    write_jsonl(tmp_path / "probe_text.jsonl", [{"text": t} for t in ("the team won the match", "market shares rose",
                                                                       "the phone software of the star")])
    write_jsonl(tmp_path / "probe_qa.jsonl", [{"question": "what is the capital of france ?", "answer": "paris"},
                                              {"question": "what is the capital of italy ?", "answer": "rome"}])
    path = make_task(train=topic_rows(6), eval=topic_rows(2, offset=20),
                     strategies={"zero_shot": {}, "ft": {"weights": {"full": full}}},
                     forgetting={"text": "probe_text.jsonl", "questions": "probe_qa.jsonl"},
                     decision={"baselines": "none"})
    report = compare(path, store_path=tmp_path / "s.sqlite", progress=False)
    zero, ft = report.strategies
    t = ft.training
    assert ft.weights == "full" and ft.fine_tuned and not zero.fine_tuned
    assert ft.made_of == "full"
    assert t.steps == 6 and t.tokens_seen > 0
    assert t.trainable_params == report.model_params == ft.model_params
    assert t.flops == 6 * report.model_params * t.tokens_seen
    assert t.flops_formula.startswith("6 x")
    assert ft.forgetting.weights_changed is True and zero.forgetting.weights_changed is False
    assert ft.forgetting.delta_loss != 0.0
    assert ft.forgetting.base == zero.forgetting.adapted

    task = load_task(path)
    folder = build(task.arms["ft"], task).output_dir(load_data(task))
    assert Path(t.adapter_path) == folder / "model"
    ckpt = inspect(folder, task)
    assert ckpt.kind == "harness_model" and ckpt.verified_digests
    base = load_backend(task.config.model)
    merged = load(ckpt, base.model)
    assert sum(p.numel() for p in merged.parameters()) == base.n_params
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert not torch.allclose(base.model(ids).logits, merged(ids).logits, atol=1e-4)


# -- 7. bad arms, through the command line ------------------------------------------------------------------------

def expect_error(capsys, tmp_path, task_path, *fragments):
    store = tmp_path / "store.sqlite"
    rc = main(["compare", str(task_path), "--store", str(store), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "task.yaml" in err, err
    for fragment in fragments:
        assert fragment in err, err
    assert not store.exists(), "a failed validation must not create the store"
    return err


def test_unknown_axis(make_task, capsys, tmp_path):
    path = make_task(strategies={"zero_shot": {}, "mixed": {"demos": {"k": 2}, "prompting": {"k": 1}}})
    expect_error(capsys, tmp_path, path, "task.yaml: strategies.mixed.prompting", "unknown axis")


def test_unknown_parameter_inside_an_axis(make_task, capsys, tmp_path):
    path = make_task(strategies={"zero_shot": {}, "shots": {"demos": {"kk": 2}}})
    expect_error(capsys, tmp_path, path, "task.yaml: strategies.shots.demos.kk", "unknown field")


def test_two_weight_methods(make_task, capsys, tmp_path):
    path = make_task(strategies={"zero_shot": {}, "both": {"weights": {"lora": {}, "full": {}}}})
    expect_error(capsys, tmp_path, path, "task.yaml: strategies.both.weights", "one weights method per arm",
                 "lora and full")


def test_unknown_weights_method(make_task, capsys, tmp_path):
    path = make_task(strategies={"zero_shot": {}, "q": {"weights": {"qlora": {}}}})
    expect_error(capsys, tmp_path, path, "task.yaml: strategies.q.weights.qlora", "unknown weights method")


def test_checkpoint_shorthand_takes_no_demos_field(make_task, capsys, tmp_path):
    path = make_task(strategies={"zero_shot": {}, "checkpoint": {"path": "x", "k": 4}})
    expect_error(capsys, tmp_path, path, "task.yaml: strategies.checkpoint.k", "unknown field")


def test_similar_demos_with_a_missing_embedder(make_task, capsys, tmp_path):
    path = make_task(strategies={"zero_shot": {}, "near": {"demos": {"select": "similar",
                                                                      "embedder": "no/such/folder"}}})
    expect_error(capsys, tmp_path, path, "task.yaml: strategies.near.demos.embedder", "no/such/folder",
                 "cannot be loaded")


def test_retrieval_corpus_that_does_not_exist(make_task, capsys, tmp_path):
    path = make_task(strategies={"zero_shot": {},
                                 "ctx": {"context": {"retrieval": {"corpus": "nowhere.jsonl"}}, "demos": {"k": 2}}})
    expect_error(capsys, tmp_path, path, "task.yaml: strategies.ctx.context.retrieval.corpus", "nowhere.jsonl",
                 "not found")


def test_bad_learning_curve_point_names_the_file(make_task, capsys, tmp_path):
    # A curve's points are built and checked with the task's arms, before the store exists.
    path = make_task(strategies={"zero_shot": {}, "near": {"demos": {"k": 2, "select": "similar"}}},
                     learning_curves=[{"strategy": "near", "param": "demos.embedder", "values": ["no/such/folder"]}])
    expect_error(capsys, tmp_path, path, "task.yaml: learning_curves.0.values.0.near.demos.embedder",
                 "no/such/folder", "cannot be loaded")


# -- 8. learning curves over an axis parameter -------------------------------------------------------------------

def test_learning_curve_over_demos_k(make_task):
    path = make_task(strategies={"zero_shot": {}, "similar_arm": {"demos": {"k": 4, "select": "similar"}}},
                     learning_curves=[{"strategy": "similar_arm", "param": "demos.k", "values": [0, 2]}])
    task = load_task(path)
    (curve, points), = task.curves
    assert curve.param == "demos.k" and [p.name for p in points] == ["similar_arm", "similar_arm"]
    assert points[0].axes() == task.arms["zero_shot"].axes()
    assert points[1].axes()["demos"] == {"k": 2, "select": "similar", "embedder": "all-MiniLM-L6-v2"}
    assert task.arms["similar_arm"].axes()["demos"]["k"] == 4
    assert {k: v for k, v in points[1].axes().items() if k != "demos"} == \
        {k: v for k, v in points[0].axes().items() if k != "demos"}


def test_learning_curve_over_an_unknown_axis_parameter(make_task):
    path = make_task(strategies={"zero_shot": {}, "similar_arm": {"demos": {"k": 4, "select": "similar"}}},
                     learning_curves=[{"strategy": "similar_arm", "param": "demos.kk", "values": [0, 2]}])
    with pytest.raises(HarnessError) as err:
        load_task(path)
    assert err.value.where.endswith("task.yaml: learning_curves.0.param"), err.value.where
    assert "no parameter 'demos.kk'" in err.value.message and "demos.k" in err.value.message


def test_learning_curve_value_out_of_range_names_the_value(make_task):
    path = make_task(strategies={"zero_shot": {}, "similar_arm": {"demos": {"k": 4, "select": "similar"}}},
                     learning_curves=[{"strategy": "similar_arm", "param": "demos.k", "values": [2, -1]}])
    with pytest.raises(HarnessError) as err:
        load_task(path)
    assert err.value.where.endswith("task.yaml: learning_curves.0.values.1"), err.value.where
    assert "greater than or equal to 0" in err.value.message
