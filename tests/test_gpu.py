"""The GPU path on the built-in model: every weights method (lora, full, QLoRA, DPO) trains, is
evaluated and probed for forgetting on cuda, and bf16 scoring picks the labels fp32 picks. Skipped
without a CUDA GPU (`pytest -m gpu` runs only these)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from harness.compare import compare
from harness.config import LocalModel
from harness.registry import load_backend

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

REPO = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m-instruct"
STEPS = {"max_steps": 6, "eval_steps": 3}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


def countries_task(tmp_path: Path, strategies: dict) -> Path:
    raw = yaml.safe_load((REPO / "benchmarks" / "tasks" / "countries.yaml").read_text())
    for split in ("train", "eval"):
        raw["data"][split] = str((REPO / "benchmarks" / "tasks" / raw["data"][split]).resolve())
    raw.update(model={"name": MODEL, "device": "cuda"}, strategies=strategies,
               limits={"eval_examples": 16, "batch_size": "auto", "max_new_tokens": 8})
    path = tmp_path / "countries_gpu.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_every_weights_method_on_cuda(tmp_path):
    qlora_model = {"name": MODEL, "device": "cuda", "quantization": {"bits": 4}}
    path = countries_task(tmp_path, {
        "zero_shot": {},
        "lora": {**STEPS, "gradient_checkpointing": True},
        "full": {"weights": {"full": {**STEPS, "optim": "adamw_torch", "warmup_ratio": 0.1}}},
        "qlora": {"model": qlora_model, "weights": {"lora": STEPS}},
        "dpo": {"weights": {"dpo": {**STEPS, "sft_first": True}}},
    })
    report = compare(path, store_path=tmp_path / "s.sqlite", progress=False)
    rows = {r.name: r for r in report.strategies}
    for name in ("lora", "full", "qlora", "dpo"):
        row = rows[name]
        assert row.fine_tuned and row.training.steps == 6, name
        assert row.forgetting is not None and row.forgetting.weights_changed, name
        assert row.peak_memory_mb > 0
    assert rows["qlora"].model.endswith("(4-bit)")
    assert rows["dpo"].training.model_extra["preference_pairs"]["from_base_answers"] > 0


def test_qlora_adapter_is_served_on_the_quantised_base(tmp_path):
    from peft import PeftModel

    from harness.arm import build
    from harness.data import load_data
    from harness.task import load_task

    path = countries_task(tmp_path, {"qlora": {"model": {"name": MODEL, "quantization": {"bits": 4}},
                                               "weights": {"lora": STEPS}}})
    task = load_task(path)
    spec = task.arms["qlora"]
    base = load_backend(spec.model)
    assert base.quantized
    served = build(spec, task).prepare(load_data(task), base)
    assert isinstance(served.model, PeftModel), "an adapter on a quantised base is not merged"


def test_bf16_scoring_agrees_with_fp32():
    fp32 = load_backend(LocalModel(name=MODEL, device="cuda", dtype="float32"))
    bf16 = load_backend(LocalModel(name=MODEL, device="cuda", dtype="bfloat16"))
    assert bf16.model.dtype == torch.bfloat16 and bf16.device.type == "cuda"
    questions = ["Is the sun hot?", "Is ice hot?", "Is water wet?", "Do fish fly?", "Is Paris in France?",
                 "Is two more than three?", "Do birds have wings?", "Is snow black?"]
    labels = ["yes", "no"]
    prompts = [fp32.render([{"role": "user", "content": q + " Answer yes or no."}]) for q in questions]
    a = [s.logprobs.index(max(s.logprobs)) for s in fp32.loglikelihood(prompts, labels)]
    b = [s.logprobs.index(max(s.logprobs)) for s in bf16.loglikelihood(prompts, labels)]
    assert sum(x == y for x, y in zip(a, b)) >= len(a) - 1
