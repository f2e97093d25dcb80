"""Shared fixtures: a tiny random model and tokenizer built here (no hub), and task files on disk."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = ("the a of and is in on to what which capital city country topic article about answer with "
         "one word sport business tech politics entertainment paris france berlin germany rome italy "
         "madrid spain lisbon portugal news team won match market shares rose phone software election "
         "vote film music star").split()


@pytest.fixture(autouse=True)
def _no_ambient_tracking(monkeypatch):
    """A developer's $MLFLOW_TRACKING_URI turns tracking on (harness/tracking.py): tests that want it say so."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


def load_benchmark(name: str):
    """A script under benchmarks/ as a module, for tests that share its helpers (a store writer, a
    server). Loaded by path: benchmarks/ is a folder of scripts, not a package."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_tiny_model(folder: Path, *, chat: bool = True, seed: int = 0, initializer_range: float = 0.02) -> Path:
    """A 2-layer Llama with a word-level tokenizer, saved like any local model folder.

    With the default initialisation the frozen, tied embeddings (norm ~0.1) cap every logit near
    1, so no adapter can make the model confident; tests that need LoRA to learn a task raise
    `initializer_range`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
    punct = list(".,:;?!'\"-()\n")
    vocab = {t: i for i, t in enumerate(specials + punct + list(WORDS) + ["user", "assistant", "system"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   eos_token="<|im_end|>", bos_token="<|im_start|>")
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    if chat:
        fast.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=0, eos_token_id=vocab["<|im_end|>"], bos_token_id=vocab["<|im_start|>"],
                         tie_word_embeddings=True, initializer_range=initializer_range)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_base_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-base") / "model", chat=False)


@pytest.fixture(scope="module")
def embedder():
    """The shipped sentence embedder (retrieval and similar demonstrations)."""
    from strategies.rag.index import load_embedder

    return load_embedder("all-MiniLM-L6-v2", Path("."), "test")


TOPICS = {
    "sport": ["the team won the match", "the star won one match", "team and star of sport"],
    "business": ["market shares rose", "the market of shares rose", "business shares and market"],
    "tech": ["the phone software", "software of the phone", "tech phone and software"],
}


def topic_rows(n_per_label: int, offset: int = 0) -> list[dict]:
    rows = []
    for label, texts in TOPICS.items():
        for i in range(n_per_label):
            j = offset + i
            text = f"{texts[j % len(texts)]} {'the ' * (j // len(texts))}article {j}"
            rows.append({"id": f"{label}-{j}", "text": text, "label": label})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def make_task(tmp_path, tiny_model_dir):
    """Write a small classification task (train/eval JSONL + YAML) and return the YAML path.

    Keyword arguments override top-level YAML fields; `raw=` writes the YAML text verbatim."""

    def make(raw: str | None = None, train=None, eval=None, **overrides) -> Path:
        write_jsonl(tmp_path / "data" / "train.jsonl", train if train is not None else topic_rows(4))
        write_jsonl(tmp_path / "data" / "eval.jsonl", eval if eval is not None else topic_rows(4, offset=10))
        task = {
            "name": "tiny_topics",
            "type": "classification",
            "model": str(tiny_model_dir),
            "data": {"train": "data/train.jsonl", "eval": "data/eval.jsonl"},
            "fields": {"id": "id", "input": "text", "target": "label"},
            "prompt": {"system": "answer with one word", "template": "article : {{ text }} topic ?"},
            "labels": list(TOPICS),
            "strategies": {"zero_shot": {}, "few_shot": {"k": 3}},
            "limits": {"batch_size": 4},
        }
        task.update(overrides)
        path = tmp_path / "task.yaml"
        path.write_text(raw if raw is not None else yaml.safe_dump(task, sort_keys=False), encoding="utf-8")
        return path

    return make


def arm(name: str, *, value: float = 0.5, metric: str = "accuracy", n: int = 100, latency_mean_ms: float = 200.0,
        p95: float | None = None, prompt: float = 100, output: float = 0.0, cached: float = 0.0, prepare_s: float = 0.0,
        weights: str = "base", training: dict | None = None, forgetting: float | None = None,
        retrieval: dict | None = None, run_id: int = 1, answers: tuple[str, int, int] | None = None,
        added_by_harness: bool = False):
    """A hand-built report row (harness.results.ArmResult) for tests of cost, decide and report: only the
    figures a test sets matter; the rest are plausible fillers. `answers`: the answer given most often,
    how many examples got it and how many of their gold answers it is (a degenerate arm gives one
    answer for nearly every example)."""
    from harness.results import ArmResult

    q = {"value": value, "ci_low": max(0.0, value - 0.05), "ci_high": min(1.0, value + 0.05)}
    probe = {"loss": 3.0, "perplexity": 20.0, "qa_contains": 0.7, "tokens": 1000}
    row = {"name": name, "run_id": run_id, "n_examples": n, "quality": {"metric": metric, **q},
           "metrics": {metric: q}, "throughput_eps": 1000 / latency_mean_ms,
           "latency_ms": {"p50": latency_mean_ms, "p95": p95 or latency_mean_ms, "mean": latency_mean_ms},
           "tokens": {"prompt_mean": prompt, "output_mean": output, "cached_mean": cached}, "prepare_s": prepare_s,
           "weights": "lora" if training is not None and weights == "base" else weights}
    if training is not None:
        row["training"] = {"wall_s": 600.0, "flops": 1e15, "adapter_bytes": 4_000_000, **training}
    if forgetting is not None:
        row["forgetting"] = {"probe": "probe", "weights_changed": forgetting != 0.0, "base": probe,
                             "adapted": {**probe, "loss": probe["loss"] + forgetting}, "delta_loss": forgetting,
                             "delta_loss_ci_low": forgetting, "delta_loss_ci_high": forgetting,
                             "delta_perplexity": 0.0, "delta_qa_contains": 0.0, "delta_qa_contains_ci_low": 0.0,
                             "delta_qa_contains_ci_high": 0.0}
    if retrieval is not None:
        row["retrieval"] = {"index": "flat", "embedder": "e", "documents": 1, "chunks": 1, "chunks_embedded": 1,
                            "chunks_reused": 0, "index_from_cache": False, "embed_s": 0.0, "index_build_s": 0.0,
                            "passages_shown_mean": 1.0, **retrieval}
    if answers is not None:
        row["answers"] = dict(zip(("top", "count", "gold_count"), answers))
    if added_by_harness:
        row["added_by_harness"] = True
    return ArmResult.model_validate(row)
