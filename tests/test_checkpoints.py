"""harness/checkpoints.py `inspect`: the three accepted layouts are recognised with their digests,
and everything unsafe or inconsistent is refused before any weight is loaded. Checkpoints are
built here from the tiny model (no training); `load` is exercised by test_lora.py and test_gate.py."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from harness.checkpoints import file_digests, inspect
from harness.errors import HarnessError
from harness.task import load_task


@pytest.fixture(scope="module")
def peft_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter of the tiny model, saved by peft, naming the model as the task does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    folder = tmp_path_factory.mktemp("peft") / "adapter"
    peft_model.save_pretrained(folder)
    set_base(folder, str(tiny_model_dir))
    return folder


@pytest.fixture(scope="module")
def full_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model saved again, as a fully fine-tuned checkpoint would be."""
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("full") / "model"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


@pytest.fixture
def task(make_task):
    return load_task(make_task())


def set_base(folder: Path, base: str) -> None:
    config = folder / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "base_model_name_or_path": base}))


def copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def harness_adapter(peft_adapter: Path, dest: Path, task, **manifest) -> Path:
    """The layout `harness train` writes: manifest.json (base model, file digests) + adapter/."""
    copy(peft_adapter, dest / "adapter")
    (dest / "manifest.json").write_text(json.dumps({"base_model": task.config.model,
                                                    "files": file_digests(dest / "adapter"), **manifest}))
    return dest


def refused(path, task, *fragments, where: str | Path | None = None) -> HarnessError:
    with pytest.raises(HarnessError) as info:
        inspect(path, task)
    err = info.value
    for fragment in fragments:
        assert fragment in str(err), err
    if where is not None:
        assert err.where == str(where), err
    return err


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_peft_adapter_is_recognised_with_digests(peft_adapter, task):
    ckpt = inspect(peft_adapter, task)
    assert ckpt.kind == "peft_adapter" and ckpt.base_model == task.config.model
    assert ckpt.folder == peft_adapter and ckpt.weights_dir == peft_adapter
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(ckpt.digests)
    assert all(ckpt.digests[name] == sha256(peft_adapter / name) for name in ckpt.digests)
    assert ckpt.verified_digests is False and ckpt.manifest is None
    described = ckpt.describe()
    assert described == {"path": str(peft_adapter), "kind": "peft_adapter", "base_model": task.config.model,
                         "digests": ckpt.digests, "verified_digests": False}


def test_peft_adapter_naming_the_same_folder_another_way(peft_adapter, task, tmp_path):
    folder = copy(peft_adapter, tmp_path / "adapter")
    model = Path(task.config.model)
    set_base(folder, str(model.parent / "." / ".." / model.parent.name / model.name))
    assert inspect(folder, task).kind == "peft_adapter"


def test_full_model_is_recognised(full_model, task):
    ckpt = inspect(full_model, task)
    assert ckpt.kind == "full_model" and ckpt.base_model is None and ckpt.manifest is None
    assert {"config.json", "model.safetensors"} <= set(ckpt.digests)
    assert ckpt.digests["model.safetensors"] == sha256(full_model / "model.safetensors")
    assert ckpt.verified_digests is False


def test_full_model_of_another_vocabulary_is_refused(full_model, task, tmp_path):
    folder = copy(full_model, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": config["vocab_size"] + 1}))
    refused(folder, task, "vocab_size", "not a fine-tune", where=folder / "config.json")


def test_full_model_without_config_is_refused(full_model, task, tmp_path):
    folder = copy(full_model, tmp_path / "model")
    (folder / "config.json").unlink()
    refused(folder, task, "no config.json", where=folder)


def test_harness_adapter_is_verified_against_its_manifest(peft_adapter, task, tmp_path):
    folder = harness_adapter(peft_adapter, tmp_path / "ckpt", task, data_hash="abc")
    ckpt = inspect(folder, task)
    assert ckpt.kind == "harness_adapter" and ckpt.verified_digests is True
    assert ckpt.weights_dir == folder / "adapter" and ckpt.base_model == task.config.model
    assert ckpt.manifest["data_hash"] == "abc" and ckpt.digests == ckpt.manifest["files"]


def test_pickle_only_folder_is_refused(task, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 not really a pickle")
    refused(folder, task, "pytorch_model.bin is a pickle", "safetensors", where=folder)


def test_pickled_peft_adapter_is_refused(peft_adapter, task, tmp_path):
    folder = copy(peft_adapter, tmp_path / "adapter")
    (folder / "adapter_model.safetensors").rename(folder / "adapter_model.bin")
    refused(folder, task, "adapter_model.bin is a pickle", where=folder)


def test_pickled_harness_adapter_is_refused(peft_adapter, task, tmp_path):
    folder = harness_adapter(peft_adapter, tmp_path / "ckpt", task)
    (folder / "adapter" / "adapter_model.safetensors").rename(folder / "adapter" / "adapter_model.bin")
    refused(folder, task, "adapter_model.bin is a pickle", where=folder / "adapter")


def test_adapter_for_another_base_is_refused(peft_adapter, task, tmp_path):
    folder = copy(peft_adapter, tmp_path / "adapter")
    set_base(folder, "some-org/other-model")
    refused(folder, task, "trained on 'some-org/other-model'", task.config.model, where=folder)


def test_adapter_naming_no_base_is_refused(peft_adapter, task, tmp_path):
    folder = copy(peft_adapter, tmp_path / "adapter")
    config = json.loads((folder / "adapter_config.json").read_text())
    del config["base_model_name_or_path"]
    (folder / "adapter_config.json").write_text(json.dumps(config))
    refused(folder, task, "trained on 'None'", where=folder)


def test_harness_adapter_for_another_base_is_refused(peft_adapter, task, tmp_path):
    folder = harness_adapter(peft_adapter, tmp_path / "ckpt", task, base_model="some-org/other-model")
    refused(folder, task, "trained on 'some-org/other-model'", where=folder)


@pytest.mark.parametrize("layout", ["peft", "full"])
def test_truncated_safetensors_is_refused(peft_adapter, full_model, task, tmp_path, layout):
    folder = copy(peft_adapter if layout == "peft" else full_model, tmp_path / "ckpt")
    weights = folder / ("adapter_model.safetensors" if layout == "peft" else "model.safetensors")
    weights.write_bytes(weights.read_bytes()[:-64])
    refused(folder, task, "not a readable safetensors file", "truncated or altered", where=weights)


def test_altered_harness_adapter_is_refused(peft_adapter, task, tmp_path):
    folder = harness_adapter(peft_adapter, tmp_path / "ckpt", task)
    weights = folder / "adapter" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one tensor value: still a valid safetensors file
    weights.write_bytes(bytes(data))
    refused(folder, task, "differs from the digest recorded at training", where=weights)


def test_altered_harness_adapter_config_is_refused(peft_adapter, task, tmp_path):
    folder = harness_adapter(peft_adapter, tmp_path / "ckpt", task)
    set_base(folder / "adapter", task.config.model + "/")  # same base, different bytes
    refused(folder, task, "differs from the digest", where=folder / "adapter" / "adapter_config.json")


def test_harness_adapter_missing_a_recorded_file_is_refused(peft_adapter, task, tmp_path):
    folder = harness_adapter(peft_adapter, tmp_path / "ckpt", task)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["tokenizer.json"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    refused(folder, task, "is missing", where=folder / "adapter" / "tokenizer.json")


def test_unreadable_manifest_is_refused(peft_adapter, task, tmp_path):
    folder = harness_adapter(peft_adapter, tmp_path / "ckpt", task)
    (folder / "manifest.json").write_text("{ not json")
    refused(folder, task, "unreadable", where=folder / "manifest.json")


def test_missing_folder_is_refused(task, tmp_path):
    refused(tmp_path / "nowhere", task, "checkpoint folder not found", where=tmp_path / "nowhere")


def test_a_file_instead_of_a_folder_is_refused(task, tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    refused(weights, task, "checkpoint folder not found", where=weights)


def test_empty_folder_is_refused(task, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    refused(folder, task, "no checkpoint here", where=folder)
