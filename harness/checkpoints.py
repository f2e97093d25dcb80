"""Fine-tuned checkpoints: recognise, verify and load them without ever unpickling anything.

Three layouts are accepted, all safetensors:

    harness weights   manifest.json + adapter/ or model/ (what `harness train` and the lora, dpo and
                      full weight methods write); the manifest records the base model and a
                      SHA-256 of every weight file
    peft adapter      adapter_config.json + adapter_model.safetensors (any peft-trained LoRA)
    full model        config.json + model*.safetensors (a fully fine-tuned model)

Verification happens before anything is loaded: a pickle-only checkpoint, a different base model,
a file whose bytes differ from the manifest's digest, or a safetensors file whose header does not
match its size is a HarnessError naming the file. Only a harness adapter carries digests; for the
other layouts an altered tensor that still parses cannot be detected, which `describe` says.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import model_name
from harness.errors import HarnessError
from harness.results import Training

if TYPE_CHECKING:
    from harness.task import LoadedTask

MANIFEST = "manifest.json"
# Where harness training puts its weights, by method.
WEIGHTS_FOLDER = {"lora": "adapter", "full": "model", "dpo": "adapter"}
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Formats torch.load would unpickle: arbitrary code on load, so never read.
PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


@dataclass(frozen=True)
class Checkpoint:
    kind: str  # "harness_adapter" | "harness_model" | "peft_adapter" | "full_model"
    folder: Path  # what the user named
    weights_dir: Path  # the folder holding the weights and their config
    base_model: str | None  # as the checkpoint names it (None for a full model)
    digests: dict[str, str]  # file name -> SHA-256 of every file in weights_dir
    verified_digests: bool  # digests were checked against ones recorded at training time
    manifest: dict | None  # a harness adapter's manifest, read once with the digests it vouches for

    def describe(self) -> dict:
        return {"path": str(self.folder), "kind": self.kind, "base_model": self.base_model,
                "digests": self.digests, "verified_digests": self.verified_digests}

    def training(self, reused: bool) -> Training | None:
        """What training this adapter cost, as its manifest recorded it (only a harness adapter has
        one). `reused`: the adapter was not trained by the run that evaluates it."""
        if not self.manifest or "training" not in self.manifest:
            return None
        return Training(**self.manifest["training"], adapter_path=str(self.weights_dir), reused_adapter=reused)


def file_digests(folder: Path) -> dict[str, str]:
    out = {}
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        h = hashlib.sha256()
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out[f.name] = h.hexdigest()
    return out


def _same_model(named: str | None, task: LoadedTask) -> bool:
    from harness.backends.local import resolve_model

    model = model_name(task.config.model)
    if named is None:
        return False
    if named == model:
        return True
    try:
        return Path(resolve_model(named, task.path.parent)).resolve() == Path(
            resolve_model(model, task.path.parent)).resolve()
    except HarnessError:
        return False


def _check_safetensors(files: list[Path]) -> None:
    """A truncated or garbled file fails here: safe_open checks the header against the file size."""
    from safetensors import SafetensorError, safe_open

    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                st.keys()
        except (SafetensorError, OSError) as e:
            raise HarnessError(str(f), f"not a readable safetensors file ({str(e).splitlines()[0]}); "
                                       "the file is truncated or altered") from None


def _refuse_pickles(folder: Path, weights: list[Path]) -> None:
    if weights:
        return
    pickled = sorted(p.name for pattern in PICKLED for p in folder.glob(pattern))
    if pickled:
        raise HarnessError(str(folder), f"only safetensors checkpoints are loaded; {pickled[0]} is a pickle, "
                                        "which can run code when loaded. Convert it with save_pretrained"
                                        "(safe_serialization=True)")
    raise HarnessError(str(folder), "no checkpoint here: expected manifest.json + adapter/ (harness), "
                                    "adapter_config.json + adapter_model.safetensors (peft) or "
                                    "config.json + model.safetensors (full model)")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HarnessError(str(path), f"unreadable ({str(e).splitlines()[0]})") from None


def inspect(path: str | Path, task: LoadedTask) -> Checkpoint:
    """The verified checkpoint at `path`, or a HarnessError saying what is wrong with it."""
    folder = Path(path)
    if not folder.is_dir():
        raise HarnessError(str(folder), "checkpoint folder not found")
    if (folder / MANIFEST).is_file():
        manifest = _read_json(folder / MANIFEST)
        # Manifests written before full fine-tuning existed have no method: they are adapters.
        method = manifest.get("method", "lora")
        weights_dir = folder / WEIGHTS_FOLDER.get(method, "adapter")
        weights = sorted(weights_dir.glob("*.safetensors")) if method == "full" else (
            [weights_dir / ADAPTER_WEIGHTS] if (weights_dir / ADAPTER_WEIGHTS).is_file() else [])
        if not weights:
            _refuse_pickles(weights_dir if weights_dir.is_dir() else folder, [])
        kind = "harness_model" if method == "full" else "harness_adapter"
        base, recorded = manifest.get("base_model"), manifest.get("files")
    elif (folder / "adapter_config.json").is_file():
        weights_dir = folder
        _refuse_pickles(folder, [folder / ADAPTER_WEIGHTS] if (folder / ADAPTER_WEIGHTS).is_file() else [])
        kind, recorded, manifest = "peft_adapter", None, None
        base = _read_json(folder / "adapter_config.json").get("base_model_name_or_path")
    else:
        weights_dir = folder
        _refuse_pickles(folder, sorted(folder.glob("*.safetensors")))
        if not (folder / "config.json").is_file():
            raise HarnessError(str(folder), "safetensors weights but no config.json: not a model folder")
        kind, base, recorded, manifest = "full_model", None, None, None

    digests = file_digests(weights_dir)
    if recorded is not None:
        for name, digest in recorded.items():
            if digests.get(name) != digest:
                what = "is missing" if name not in digests else "differs from the digest recorded at training"
                raise HarnessError(str(weights_dir / name), f"{what}: the checkpoint is truncated or altered")
    _check_safetensors(sorted(weights_dir.glob("*.safetensors")))

    if kind == "full_model":
        _check_architecture(weights_dir, task)
    elif kind == "harness_model" and not _same_model(base, task):
        raise HarnessError(str(folder), f"model was fine-tuned from '{base}', but the task's model is "
                                        f"'{task.config.model}'")
    elif not _same_model(base, task):
        raise HarnessError(str(folder), f"adapter was trained on '{base}', but the task's model is "
                                        f"'{task.config.model}'")
    return Checkpoint(kind, folder, weights_dir, base, digests, recorded is not None, manifest)


def _check_architecture(folder: Path, task: LoadedTask) -> None:
    """A full model has no base to name; it must at least share the task model's architecture and
    vocabulary, since it is run with the task model's tokenizer and prompts."""
    from transformers import AutoConfig

    from harness.backends.local import resolve_model

    mine = _read_json(folder / "config.json")
    base = AutoConfig.from_pretrained(resolve_model(model_name(task.config.model), task.path.parent)).to_dict()
    for key in ("model_type", "vocab_size"):
        if mine.get(key) != base.get(key):
            raise HarnessError(str(folder / "config.json"),
                               f"{key} is {mine.get(key)!r}, the task's model '{task.config.model}' has "
                               f"{base.get(key)!r}: not a fine-tune of it")


def load(ckpt: Checkpoint, base: Any) -> Any:
    """The checkpoint's model, adapters merged in so inference costs what the base costs.

    An adapter is merged into a copy of `base`, the task's model as already loaded, which goes on
    serving other runs unchanged; a full model is other weights, so it is read from its folder, at
    the base's precision and on its device. On a quantised base the adapter stays unmerged, as
    QLoRA is served: merging would round the adapter's update into 4- or 8-bit weights, which
    evaluates a model that was never trained."""
    full = ckpt.kind in ("full_model", "harness_model")
    from safetensors import SafetensorError

    try:
        if full:
            from transformers import AutoModelForCausalLM

            return AutoModelForCausalLM.from_pretrained(ckpt.weights_dir, dtype=base.dtype,
                                                        use_safetensors=True).to(base.device)
        from peft import PeftModel

        adapted = PeftModel.from_pretrained(copy.deepcopy(base), ckpt.weights_dir)
        return adapted if getattr(base, "hf_quantizer", None) is not None else adapted.merge_and_unload()
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as e:
        raise HarnessError(str(ckpt.folder), f"checkpoint cannot be loaded ({str(e).splitlines()[0]})") from None
