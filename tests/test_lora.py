"""LoRA on a tiny model: it learns on a copy of the loaded model, changes it, is reused, resumed
and refused when broken; forgetting reads zero for prompting and non-zero for LoRA."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harness.arm import build
from harness.checkpoints import inspect, load
from harness.cli import main
from harness.compare import compare
from harness.data import load_data
from harness.errors import HarnessError
from harness.registry import load_backend
from harness.strategy import Trainable
from harness.task import load_task
from tests.conftest import topic_rows

# A learning rate far above the default: a random tiny model must move visibly in 30 steps.
LORA = {"max_steps": 30, "eval_steps": 10, "learning_rate": 0.01, "batch_size": 4}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


def lora_task(make_task, **lora):
    return make_task(train=topic_rows(12), eval=topic_rows(4, offset=20),
                     strategies={"zero_shot": {}, "lora": {**LORA, **lora}})


@pytest.mark.parametrize("progress", [False, True], ids=["quiet", "bars"])
def test_lora_learns_and_changes_the_model(make_task, tmp_path, capsys, progress):
    path = lora_task(make_task)
    report = compare(path, store_path=tmp_path / "s.sqlite", progress=progress)
    # Its losses go to the training record, not to stdout beside the comparison's table.
    assert "'loss'" not in capsys.readouterr().out
    zero, lora, *added = report.strategies
    assert [r.name for r in added] == ["raw", "calibrated", "raw_calibrated"]
    assert all(r.added_by_harness for r in added)
    t = lora.training
    assert lora.fine_tuned and not zero.fine_tuned
    assert t.final_loss < t.first_loss
    assert t.steps == 30 and t.tokens_seen > 0 and t.tokens_per_s > 0
    assert t.flops == 4 * report.model_params * t.tokens_seen
    assert 0 < t.trainable_params < report.model_params
    assert t.adapter_bytes > 0 and not t.reused_adapter

    weights = load_file(Path(t.adapter_path) / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.abs().sum() > 0 for w in lora_b), "LoRA B starts at zero: training must move it"

    # Prompting leaves the weights alone, and the measurement shows it; LoRA moved them.
    assert zero.forgetting.weights_changed is False and zero.forgetting.delta_loss == 0.0
    assert lora.forgetting.weights_changed is True and lora.forgetting.delta_loss != 0.0
    assert lora.forgetting.base == zero.forgetting.adapted


def test_loss_on_answer_logits_only_equals_the_loss_over_every_position(make_task):
    """The collator has only the positions that predict answer tokens projected onto the vocabulary;
    the loss and every gradient are those of the full logits."""
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq

    from strategies.finetune import AnswerLogitsCollator, training_rows

    task = load_task(lora_task(make_task))
    data, backend = load_data(task), load_backend(task.config.model)
    rows, _ = training_rows(task, data, backend, task.arms["lora"].weights.config, None, "lora")
    features = [{k: r[k] for k in ("input_ids", "labels")} for r in rows[:6]]
    assert len({len(f["input_ids"]) for f in features}) > 1, "rows of one length would need no padding"
    backend.tokenizer.padding_side = "right"
    full = DataCollatorForSeq2Seq(backend.tokenizer, padding=True, label_pad_token_id=-100)(features)
    kept = AnswerLogitsCollator(backend.tokenizer)(features)
    assert kept["logits_to_keep"].numel() < full["input_ids"].shape[1] / 2
    torch.manual_seed(0)
    model = get_peft_model(backend.model, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules="all-linear",
                                                     init_lora_weights=False))
    losses, grads = [], []
    for batch in (full, kept):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7)
    assert grads[0].abs().sum() > 0


def test_identical_config_reuses_the_adapter(make_task, tmp_path, monkeypatch):
    path = lora_task(make_task)
    compare(path, store_path=tmp_path / "a.sqlite", progress=False)
    import strategies.finetune as finetune

    monkeypatch.setattr(finetune, "train_weights", lambda *a, **k: pytest.fail("retrained an identical config"))
    # A fresh store forces evaluation again; the adapter itself must come from the cache.
    report = compare(path, store_path=tmp_path / "b.sqlite", progress=False, strategies=["lora"])
    assert report.strategies[0].training.reused_adapter is True


def test_trains_and_merges_on_copies_of_the_loaded_model(make_task, monkeypatch):
    """The compare's model is loaded once: training and merging work on copies of it, since the
    other strategies and the forgetting probe go on using it as the base."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    task = load_task(lora_task(make_task))
    data, backend = load_data(task), load_backend(task.config.model)
    before = {k: v.clone() for k, v in backend.model.state_dict().items()}
    for cls in (AutoModelForCausalLM, AutoTokenizer):
        monkeypatch.setattr(cls, "from_pretrained", lambda *a, **k: pytest.fail(f"loaded {a[0]} again"))

    strategy = build(task.arms["lora"], task)
    assert isinstance(strategy, Trainable)
    adapted = strategy.prepare(data, backend)
    assert all(torch.equal(before[k], v) for k, v in backend.model.state_dict().items())
    assert backend.tokenizer.padding_side == "left"
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert not torch.allclose(backend.model(ids).logits, adapted.model(ids).logits, atol=1e-4)


def _train_in_subprocess(task_path: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "train", str(task_path), "--no-progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_training_resumes_from_its_last_checkpoint(make_task, tmp_path):
    path = lora_task(make_task, max_steps=400, eval_steps=5)
    task = load_task(path)
    folder = build(task.arms["lora"], task).output_dir(load_data(task))
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}

    proc = _train_in_subprocess(path, env)
    deadline = time.time() + 300
    # Kill the moment the second checkpoint's folder appears: most likely while it is being
    # written, the worst case for a resume.
    while not (folder / "checkpoints" / "checkpoint-10").exists() and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (folder / "manifest.json").exists()

    proc = _train_in_subprocess(path, env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["training"]["resumed_from_step"] >= 5
    # It went on past the kill until early stopping or max_steps ended it.
    assert manifest["training"]["steps"] > manifest["training"]["resumed_from_step"]
    assert not (folder / "checkpoints").exists(), "checkpoints are removed once the adapter is final"


def expect_exit_2(capsys, tmp_path, path, *fragments):
    capsys.readouterr()  # drop what training printed before the command under test
    rc = main(["compare", str(path), "--store", str(tmp_path / "s.sqlite"), "--no-progress", "--strategies", "lora"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_too_few_training_examples(make_task, capsys, tmp_path):
    path = make_task(train=topic_rows(2), strategies={"lora": LORA})
    expect_exit_2(capsys, tmp_path, path, "strategies.lora", "training examples", "at least 8")
    assert not (tmp_path / "s.sqlite").exists(), "refused before the store opens"


def test_train_checks_the_template_before_training(make_task, capsys, tmp_path):
    path = make_task(train=topic_rows(12), eval=topic_rows(4, offset=20), strategies={"lora": LORA},
                     prompt={"template": "{{ title }} {{ text }} topic ?"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
        rc = main(["train", str(path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "prompt.template: cannot be rendered for example 'sport-0'" in err and "'title' is undefined" in err
    assert not (tmp_path / "cache").exists(), "nothing trained, nothing written"


def test_answer_longer_than_max_length(make_task, capsys, tmp_path):
    path = lora_task(make_task, max_length=8)
    expect_exit_2(capsys, tmp_path, path, "strategies.lora.max_length", "do not fit")
    assert not (tmp_path / "s.sqlite").exists(), "refused before the store opens"


def test_unknown_target_module(make_task, capsys, tmp_path):
    path = lora_task(make_task, target_modules=["no_such_proj"])
    expect_exit_2(capsys, tmp_path, path, "strategies.lora.target_modules", "no_such_proj")


def _trained_folder(make_task, tmp_path):
    path = lora_task(make_task)
    compare(path, store_path=tmp_path / "first.sqlite", progress=False, strategies=["lora"])
    task = load_task(path)
    return path, build(task.arms["lora"], task).output_dir(load_data(task))


def test_corrupted_adapter_is_refused(make_task, capsys, tmp_path):
    path, folder = _trained_folder(make_task, tmp_path)
    weights = folder / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    expect_exit_2(capsys, tmp_path, path, "adapter_model.safetensors", "truncated or altered")


def test_foreign_adapter_is_refused(make_task, capsys, tmp_path):
    path, folder = _trained_folder(make_task, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "base_model": "some-other-model"}))
    expect_exit_2(capsys, tmp_path, path, "trained on 'some-other-model'")


def test_resume_with_a_changed_config_is_refused(make_task, tmp_path):
    path = lora_task(make_task)
    task = load_task(path)
    data = load_data(task)
    params = task.arms["lora"].weights.config
    folder = tmp_path / "adapter"
    (folder / "checkpoints" / "checkpoint-10").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-10" / "trainer_state.json").write_text("{}")
    (folder / "training_config.json").write_text(json.dumps({**params.model_dump(mode="json"), "r": 64}))
    with pytest.raises(HarnessError, match="different training config"):
        build(task.arms["lora"], task).train(data, load_backend(task.config.model), folder, progress=False)


def test_scales_out_with_accelerate_launch(make_task, tmp_path):
    path = lora_task(make_task, max_steps=6, eval_steps=3)
    out = tmp_path / "ddp-adapter"
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    accelerate = Path(sys.executable).parent / "accelerate"
    proc = subprocess.run([str(accelerate), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no",
                           "-m", "harness", "train", str(path), "--output", str(out), "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "weights saved" in proc.stdout
    task = load_task(path)
    base = load_backend(task.config.model)
    merged = load(inspect(out, task), base.model)
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert sum(p.numel() for p in merged.parameters()) == base.n_params
