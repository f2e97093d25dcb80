"""A local model's options and the training options: each reaches `from_pretrained` or the Trainer,
each enters the run key only where it changes results (a plain name keeps its key), and each is
refused in one line naming its field where it cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.arm import build
from harness.backends.local import MAX_AUTO_BATCH
from harness.config import LocalModel, model_key, model_label
from harness.data import load_data
from harness.errors import HarnessError
from harness.registry import load_backend
from harness.task import load_task
from tests.conftest import topic_rows
from tests.test_bad_input import expect_error

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


def test_a_plain_name_and_its_mapping_share_a_key():
    assert model_key("some/model") == "some/model"
    assert model_key(LocalModel(name="some/model")) == "some/model"
    # The device changes where, not what: restating defaults or choosing a device keeps the key.
    assert model_key(LocalModel(name="some/model", device="cpu", dtype="auto")) == "some/model"
    assert model_key(LocalModel(name="m", dtype="bfloat16", quantization={"bits": 4})) == {
        "name": "m", "dtype": "bfloat16", "quantization": {"bits": 4}}
    assert model_label(LocalModel(name="m", dtype="bfloat16", quantization={"bits": 4})) == "m (4-bit, bfloat16)"


def test_a_mapping_without_backend_is_a_local_model(make_task, tiny_model_dir):
    task = load_task(make_task(model={"name": str(tiny_model_dir), "dtype": "bfloat16"}))
    assert isinstance(task.config.model, LocalModel)
    hosted = load_task(make_task(model={"backend": "openai", "name": "x", "base_url": "http://127.0.0.1:1/v1",
                                        "usd_per_mtok_input": 0, "usd_per_mtok_output": 0}))
    assert hosted.config.model.backend == "openai"
    # An arm's own model mapping is read the same way.
    arms = load_task(make_task(strategies={"zero_shot": {}, "half": {"model": {"name": str(tiny_model_dir),
                                                                                "dtype": "float16"}}}))
    assert arms.arms["half"].model.dtype == "float16"


def test_string_model_run_key_is_unchanged(make_task, tmp_path, tiny_model_dir):
    """`model: NAME` and `model: {name: NAME}` store one run: the second compare reuses the first's."""
    from harness.compare import compare

    store = tmp_path / "s.sqlite"
    first = compare(make_task(strategies={"zero_shot": {}}), store_path=store, progress=False)
    again = compare(make_task(strategies={"zero_shot": {}}, model={"name": str(tiny_model_dir)}), store_path=store,
                    progress=False)
    assert first.strategies[0].run_id == again.strategies[0].run_id and again.strategies[0].reused


def test_dtype_and_attention_reach_from_pretrained(tiny_model_dir):
    backend = load_backend(LocalModel(name=str(tiny_model_dir), dtype="bfloat16", attn_implementation="eager"))
    assert backend.model.dtype == torch.bfloat16
    assert backend.model.config._attn_implementation == "eager"
    assert load_backend(str(tiny_model_dir)).model.dtype == torch.float32  # auto on CPU: today's float32


def test_revision_reaches_from_pretrained(monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen = {}

    def fake(path, **kwargs):
        seen.update(kwargs)
        raise OSError("offline")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda path, **kwargs: seen.update(kwargs) or object())
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake)
    with pytest.raises(HarnessError):
        load_backend(LocalModel(name="org/model", revision="abc123"))
    assert seen["revision"] == "abc123" and seen["dtype"] == torch.float32


def test_bf16_scores_agree_with_fp32_on_the_tiny_model(tiny_model_dir):
    """The small-sample version of benchmarks/bf16_agreement.py: the same label wins in both precisions."""
    from harness.backends.base import Prompt

    fp32 = load_backend(str(tiny_model_dir))
    bf16 = load_backend(LocalModel(name=str(tiny_model_dir), dtype="bfloat16"))
    prompts = [fp32.render([{"role": "user", "content": row["text"]}]) for row in topic_rows(6)]
    labels = ["sport", "business", "tech"]
    a = [max(range(3), key=s.logprobs.__getitem__) for s in fp32.loglikelihood(prompts, labels)]
    b = [max(range(3), key=s.logprobs.__getitem__) for s in bf16.loglikelihood(prompts, labels)]
    assert sum(x == y for x, y in zip(a, b)) >= 0.9 * len(a)
    assert isinstance(prompts[0], Prompt)


@pytest.mark.integration
def test_bf16_agrees_with_fp32_on_bbc(tmp_path):
    """The two precisions pick different labels only where fp32's top two are a near tie (under half
    a nat apart: bf16 rounds a logit of 30 by ~0.1), and then rarely (benchmarks/bf16_agreement.py
    prints the figures on 150)."""
    if not (REPO / "benchmarks" / "data" / "bbc_news" / "eval.jsonl").is_file():
        pytest.skip("BBC data not built (make install)")
    from tests.conftest import load_benchmark

    result = load_benchmark("bf16_agreement").agreement(REPO / "benchmarks" / "tasks" / "bbc_news.yaml", 20, "cpu",
                                                         tmp_path)
    assert all(m < 0.5 for m in result["disagreement_margins"]), result
    assert result["agreement"] >= 0.85, result


def test_training_options_reach_the_trainer(make_task, monkeypatch):
    """Every option is in the Trainer's arguments, and gradient checkpointing is on in the model."""
    import strategies.finetune as finetune

    options = {"gradient_checkpointing": True, "warmup_ratio": 0.25, "weight_decay": 0.1, "lr_scheduler": "cosine",
               "optim": "adamw_torch", "max_steps": 2, "eval_steps": 2, "batch_size": 4}
    task = load_task(make_task(train=topic_rows(8), strategies={"lora": options}))
    data, backend = load_data(task), load_backend(task.config.model)
    seen = {}
    original = finetune.sft_trainer

    def spy(model, args, *rest):
        seen["trainer"] = trainer = original(model, args, *rest)
        return trainer

    monkeypatch.setattr(finetune, "sft_trainer", spy)
    training = build(task.arms["lora"], task).train(data, backend, None, progress=False)
    trainer = seen["trainer"]
    a = trainer.args
    assert (a.warmup_steps, a.weight_decay, a.lr_scheduler_type, a.optim) == (0.25, 0.1, "cosine", "adamw_torch")
    assert a.activation_checkpointing and trainer.model.base_model.model.is_gradient_checkpointing
    assert training.steps == 2 and training.final_loss is not None
    # The cosine schedule with warmup moved the learning rate the way it says.
    rates = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert rates and max(rates) <= 1e-3


def test_training_options_at_defaults_keep_the_weights_key():
    from strategies import full, lora

    before = {"learning_rate", "epochs", "max_steps", "batch_size", "grad_accum", "max_length", "eval_steps",
              "early_stopping_patience", "validation_fraction", "max_validation", "train_fraction", "seed", "r",
              "alpha", "dropout", "target_modules"}
    assert set(lora.Config().key()) == before
    assert set(full.Config().key()) == before - {"r", "alpha", "dropout", "target_modules"}
    assert lora.Config(weight_decay=0.1).key()["weight_decay"] == 0.1


def test_batch_size_auto_is_the_default_on_cpu(make_task, tmp_path):
    from harness.compare import compare

    report = compare(make_task(limits={"batch_size": "auto"}, strategies={"zero_shot": {}}),
                     store_path=tmp_path / "s.sqlite", progress=False)
    assert report.strategies[0].n_examples == 12


def test_batch_size_auto_halves_on_out_of_memory_and_remembers(tiny_model_dir, tmp_path, monkeypatch):
    """On a GPU: tried from MAX_AUTO_BATCH down, halving on each OOM, then read back from the cache."""
    backend = load_backend(str(tiny_model_dir))
    backend.device = torch.device("cuda")  # only its type is read before probing
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: type("P", (), {"total_memory": 1 << 34}))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    tried = []

    def score(prompts, labels):
        tried.append(len(prompts))
        if len(prompts) > 8:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return []

    monkeypatch.setattr(backend, "_score", score)
    prompts = [backend.render([{"role": "user", "content": row["text"]}]) for row in topic_rows(2)]
    assert backend.auto_batch_size(lambda n: prompts[-n:], ["sport"], 8) == 8
    assert tried == [MAX_AUTO_BATCH, 32, 16, 8]
    assert backend.auto_batch_size(lambda n: prompts[-n:], ["sport"], 8) == 8 and len(tried) == 4


# ---------------------------------------------------------------- refusals: one line, exit 2, no store

def test_cuda_without_a_gpu_is_refused(make_task, capsys, tmp_path, tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = make_task(model={"name": str(tiny_model_dir), "device": "cuda"})
    expect_error(capsys, tmp_path, path, "task.yaml: model.device", "cuda asked, but this machine has no CUDA GPU")


def test_four_bits_on_cpu_is_refused(make_task, capsys, tmp_path, tiny_model_dir):
    path = make_task(model={"name": str(tiny_model_dir), "device": "cpu", "quantization": {"bits": 4}})
    expect_error(capsys, tmp_path, path, "task.yaml: model.quantization", "4-bit")


@pytest.mark.parametrize("model, field", [
    ({"dtype": "float8"}, "model.dtype"),
    ({"device": "gpu"}, "model.device"),
    ({"quantization": {"bits": 3}}, "model.quantization.bits"),
    ({"revision": "main"}, "model.revision"),
    ({"attn_implementation": "telepathic"}, "model.attn_implementation"),
    ({"nam": "x"}, "model.nam"),
])
def test_bad_model_option_names_its_field(make_task, capsys, tmp_path, tiny_model_dir, model, field):
    expect_error(capsys, tmp_path, make_task(model={"name": str(tiny_model_dir), **model}), f"task.yaml: {field}")


@pytest.mark.parametrize("options, field", [
    ({"optim": "sgd_with_wings"}, "strategies.lora.optim"),
    ({"lr_scheduler": "sawtooth"}, "strategies.lora.lr_scheduler"),
    ({"warmup_ratio": 1.5}, "strategies.lora.warmup_ratio"),
])
def test_bad_training_option_names_its_field(make_task, capsys, tmp_path, options, field):
    path = make_task(train=topic_rows(8), strategies={"lora": options})
    expect_error(capsys, tmp_path, path, f"task.yaml: {field}")


def test_bad_batch_size_names_its_field(make_task, capsys, tmp_path):
    expect_error(capsys, tmp_path, make_task(limits={"batch_size": "huge"}), "task.yaml: limits.batch_size")


def test_an_extra_that_is_not_installed_is_named_in_one_line(monkeypatch, capsys, tmp_path):
    import importlib.util

    from harness.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "streamlit" else find_spec(name, *a))
    assert main(["dashboard", "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ft-harness[dashboard]" in err, err
