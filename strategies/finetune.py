"""Fine-tuning through the HF Trainer, shared by the `lora`, `full` and `dpo` weight methods.

Training goes through `transformers.Trainer`, so the same code runs on one CPU here and under
`accelerate launch` on many GPUs (`harness train TASK.yaml` is the entry point for that). The
model learns to answer the arm's prompt as it will be served (with its retrieved passages, if the
arm retrieves): loss is on the answer tokens only, in the model's chat format. Demonstrations are
not put in training prompts: the weights are what learns the behaviour they would show. Trained
weights live under the cache, one folder per (task, data, method, parameters, prompt):

    <cache>/adapters/<task>-<key>/
        checkpoints/      Trainer checkpoints while training: a killed run resumes from the last
        adapter/ | model/ the LoRA adapter, or the full model, when finished
        manifest.json     written last: its presence means the weights are complete

An identical configuration reuses the finished weights; a changed one is a different key.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from harness.backends.base import HasWeights, Prompt
from harness.checkpoints import WEIGHTS_FOLDER, file_digests, inspect, load
from harness.config import TaughtConfig, model_key, model_name
from harness.errors import HarnessError
from harness.examples import Example, TaskData
from harness.files import atomic_write_text, cache_dir
from harness.measure import FLOPS_FORMULA, package_versions, peak_memory_mb, timer, training_flops, utc_now
from harness.prompting import build_messages, render
from harness.results import Training
from harness.strategy import Component, Messages

if TYPE_CHECKING:
    from harness.task import LoadedTask

MIN_TRAIN_EXAMPLES = 8


class TrainingConfig(TaughtConfig):
    learning_rate: float = Field(1e-3, gt=0, description="peak learning rate (see lr_scheduler)")
    epochs: float = Field(1.0, gt=0, description="passes over the training examples")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (a compute budget)")
    batch_size: int = Field(8, ge=1, description="examples per device per step")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    max_length: int = Field(256, ge=8, description="longest prompt + answer in tokens")
    eval_steps: int = Field(20, ge=1, description="validation loss and a checkpoint every this many steps")
    early_stopping_patience: int = Field(3, ge=1, description="stop after this many evaluations without improvement")
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out when the task "
                                                                    "has no validation split")
    max_validation: int = Field(64, ge=1, description="cap on validation examples (each evaluation costs time)")
    train_fraction: float = Field(1.0, gt=0, le=1, description="use this share of the training examples "
                                                               "(for learning curves)")
    seed: int | None = Field(None, description="training seed (default: the task's seed)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less "
                                                            "memory, about 20% slower")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of the steps the learning rate warms up over")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    lr_scheduler: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                          "constant_with_warmup", "inverse_sqrt"] = Field(
        "linear", description="how the learning rate falls from its peak (transformers' lr_scheduler_type)")
    optim: str | None = Field(None, description="transformers' optimizer name (adamw_torch, adamw_8bit, "
                                                "paged_adamw_8bit, adafactor, ...); default: transformers' AdamW")

    def key(self) -> dict:
        """What identifies the trained weights: every parameter, except the options added since weights
        were first cached when they are at their defaults, so those weights stay reusable."""
        later = ("gradient_checkpointing", "warmup_ratio", "weight_decay", "lr_scheduler", "optim", "teacher",
                 "min_confidence")
        dumped = self.model_dump(mode="json")
        return {k: v for k, v in dumped.items() if k not in later or v != type(self).model_fields[k].default}


def weights_dir(task: LoadedTask, method: str, params: TrainingConfig, data_hash: str,
                prompt: dict | None = None) -> Path:
    """The cache folder of one training configuration. `prompt` is what the training prompts
    depend on beyond the task's template (an arm's retrieval settings and corpus)."""
    from harness.data import config_fingerprint

    cfg = task.config
    # Other accepted answers (fields.references) are for scoring: training learns the target.
    spec = {"model": model_key(cfg.model), "type": cfg.type, "fields": cfg.fields.model_dump(exclude={"references"}),
            "labels": cfg.labels,
            "prompt": cfg.prompt.training_key(), "seed": cfg.seed, "data": data_hash, "params": params.key()}
    # LoRA's key predates the other methods and prompts: kept as it was, its adapters stay reusable.
    if method != "lora" or prompt:
        spec = {**spec, "method": method, "arm_prompt": prompt or {}}
    return cache_dir() / "adapters" / f"{cfg.name}-{config_fingerprint(spec)}"


def training_split(task: LoadedTask, data: TaskData, params: TrainingConfig,
                   where: str) -> tuple[list[Example], list[Example]]:
    """Training and validation examples: the task's validation split, or a seeded hold-out of train."""
    seed = task.config.seed if params.seed is None else params.seed
    train = list(data.train)
    random.Random(seed).shuffle(train)
    if data.validation:
        validation = list(data.validation)[: params.max_validation]
    else:
        n_val = min(params.max_validation, max(1, int(len(train) * params.validation_fraction)))
        validation, train = train[:n_val], train[n_val:]
    train = train[: max(1, round(len(train) * params.train_fraction))]
    if len(train) < MIN_TRAIN_EXAMPLES:
        raise HarnessError(where, f"only {len(train)} training examples after holding out validation "
                                  f"(need at least {MIN_TRAIN_EXAMPLES}); add training data or raise train_fraction")
    return train, validation


def _tokenize(backend: HasWeights, examples: list[Example], max_length: int, prompt: Callable[[Example], Prompt],
              where: str) -> list[dict]:
    """Prompt in the format the runner uses, then the answer as it is scored; loss only on the answer."""
    rows, too_long = [], []
    for ex in examples:
        prompt_ids, (answer,) = backend.split_answers(prompt(ex), [ex.target])
        if len(answer) >= max_length:
            raise HarnessError(f"{where}.max_length", f"the answer of example '{ex.id}' is {len(answer)} tokens, "
                                                      f"longer than max_length={max_length}; raise max_length")
        if len(prompt_ids) + len(answer) > max_length:
            too_long.append(ex.id)
            continue
        rows.append({"input_ids": prompt_ids + answer, "labels": [-100] * len(prompt_ids) + answer,
                     "length": len(prompt_ids) + len(answer)})
    if too_long:
        raise HarnessError(f"{where}.max_length",
                           f"{len(too_long)} example(s) (e.g. '{too_long[0]}') do not fit max_length={max_length} "
                           f"tokens; raise max_length or set prompt.max_input_tokens")
    return rows


def _complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json last, and not atomically: a checkpoint is complete once
    that file is whole."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def _last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint the Trainer finished writing. transformers' get_last_checkpoint
    returns the newest folder even when a kill interrupted its writing."""
    done = [p for p in folder.glob("checkpoint-*") if _complete(p)]
    return str(max(done, key=lambda p: int(p.name.rsplit("-", 1)[1]))) if done else None


def training_rows(task: LoadedTask, data: TaskData, backend: HasWeights, params: TrainingConfig,
                  messages: Messages | None, where: str) -> tuple[list[dict], list[dict]]:
    """The tokenized training and validation examples: each prompt as the runner renders it, then
    its answer; HarnessError when there are too few or one does not fit max_length."""
    turns = messages or (lambda ex: build_messages(task, ex, backend))

    def prompt(ex: Example) -> Prompt:
        return render(task, backend, turns(ex))

    train, validation = training_split(task, data, params, where)
    return (_tokenize(backend, train, params.max_length, prompt, where),
            _tokenize(backend, validation, params.max_length, prompt, where))


class AnswerLogitsCollator:
    """Pads a batch as DataCollatorForSeq2Seq does, and has the model project onto the vocabulary
    only the positions that predict an answer token (`logits_to_keep`, with the labels shifted to
    them, `shift_labels`). The loss is on those positions only, so it and its gradients are the same
    as over every position; the full logits (batch x length x vocabulary, ~300 MB a batch here) and
    their gradient are never made, most of a CPU step's memory traffic."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorForSeq2Seq

        self.pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)

    def __call__(self, features):
        batch = self.pad(features)
        labels = batch["labels"]
        keep = (labels[:, 1:] != -100).any(0).nonzero().squeeze(-1)  # position i predicts token i + 1
        batch["logits_to_keep"] = keep
        batch["shift_labels"] = labels[:, keep + 1]
        return batch


def training_arguments(params: TrainingConfig, checkpoints: Path, seed: int, backend: HasWeights,
                       progress: bool) -> dict:
    """The keyword arguments of transformers' TrainingArguments (and of trl's configs, which extend
    it) for `params`: every training option reaches the Trainer from here."""
    import torch

    from harness.tracking import trainer_report_to

    cuda = backend.device.type == "cuda"
    return dict(
        output_dir=str(checkpoints),
        per_device_train_batch_size=params.batch_size,
        per_device_eval_batch_size=params.batch_size,
        gradient_accumulation_steps=params.grad_accum,
        learning_rate=params.learning_rate,
        num_train_epochs=params.epochs,
        max_steps=params.max_steps or -1,
        lr_scheduler_type=params.lr_scheduler,
        # A float below 1 is a share of the steps (transformers v5 folded warmup_ratio into it).
        warmup_steps=params.warmup_ratio,
        weight_decay=params.weight_decay,
        **({"optim": params.optim} if params.optim else {}),
        activation_checkpointing=params.gradient_checkpointing,
        # Non-reentrant checkpointing needs no gradient on the inputs, which a frozen base (LoRA) lacks.
        activation_checkpointing_kwargs={"use_reentrant": False} if params.gradient_checkpointing else None,
        eval_strategy="steps",
        eval_steps=params.eval_steps,
        save_strategy="steps",
        save_steps=params.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        prediction_loss_only=True,
        greater_is_better=False,
        logging_steps=max(1, params.eval_steps // 4),
        report_to=trainer_report_to(),  # mlflow inside an arm's tracked run (harness/tracking.py)
        seed=seed,
        data_seed=seed,
        # Where the model was put (`model.device`), not where a GPU happens to be.
        use_cpu=not cuda,
        # Mixed precision where the GPU has bf16, unless the model was loaded in float16 on purpose.
        bf16=cuda and backend.model.dtype != torch.float16 and torch.cuda.is_bf16_supported(),
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )


def check_training_options(params: TrainingConfig, where: str) -> None:
    """An optimizer transformers does not know is refused before any run starts, not at its first step."""
    if params.optim is None:
        return
    from transformers.training_args import OptimizerNames

    try:
        OptimizerNames(params.optim)
    except ValueError:
        raise HarnessError(f"{where}.optim", f"unknown optimizer '{params.optim}'; transformers has "
                                             f"{', '.join(o.value for o in OptimizerNames)}") from None


def sft_trainer(model, args: dict, train_rows: list[dict], val_rows: list[dict], backend: HasWeights):
    """The supervised Trainer: loss on the answer tokens only (AnswerLogitsCollator)."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    # Training batches pad on the right, after the answer; the backend pads on the left for inference.
    collate_tok = copy.deepcopy(backend.tokenizer)
    collate_tok.padding_side = "right"
    # Batches of similar length waste less compute on padding.
    return Trainer(model=model, args=TrainingArguments(**args, train_sampling_strategy="group_by_length"),
                   train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(val_rows),
                   data_collator=AnswerLogitsCollator(collate_tok))


def train_weights(weights: FineTuned, data: TaskData, backend: HasWeights, out: Path,
                  progress: bool = True) -> dict | None:
    """Train (or resume training) `weights.trainable(copy of the backend's model)` into `out` with the
    Trainer `weights.trainer` builds on `weights.rows`; returns the manifest, or None on a process of
    a distributed run that does not write."""
    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    task, params, method = weights.task, weights.config, weights.method
    train_rows, val_rows, facts = weights.rows(data, backend)

    checkpoints = out / "checkpoints"
    started = out / "training_config.json"
    config_json = params.key()
    last = _last_complete_checkpoint(checkpoints)
    if last and started.is_file() and json.loads(started.read_text()) != config_json:
        raise HarnessError(str(out), "the checkpoints here were started with a different training config; "
                                     "delete the folder to start over")
    # Atomic: a rerun after a kill here compares against this file.
    atomic_write_text(started, json.dumps(config_json, indent=1))

    # A copy: the backend's model stays the base that the other arms and the forgetting probe use.
    model = weights.trainable(copy.deepcopy(backend.model))
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    seed = task.config.seed if params.seed is None else params.seed
    trainer = weights.trainer(model, training_arguments(params, checkpoints, seed, backend, progress),
                              train_rows, val_rows, backend)
    trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=params.early_stopping_patience))
    # The Trainer prints every logged loss as a dict on stdout (through its bar, or bare when bars are
    # off), in the middle of the comparison's table; the losses are kept in its log history, which the
    # manifest records, so only its bars are shown.
    trainer.remove_callback(ProgressCallback if progress else PrinterCallback)
    if progress:
        class BarsOnly(ProgressCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                pass

        trainer.add_callback(BarsOnly)
    with timer() as wall:
        result = trainer.train(resume_from_checkpoint=last)
    tokens = int(trainer.state.num_input_tokens_seen)
    if not trainer.is_world_process_zero():
        return None

    final = out / WEIGHTS_FOLDER[method]
    adapter = method != "full"
    # Only the trained adapter: DPO keeps a frozen copy of it as its reference, which is not served.
    trainer.model.save_pretrained(final, **({"selected_adapters": ["default"]} if adapter else {}))
    if adapter:
        # Name the base as the task does (an alias or hub id), not as this machine's cache path, so
        # the gate can check the adapter against a task anywhere. Done after saving: peft looks the
        # base's config up by this name while saving, which works only with the local path.
        adapter_config = final / "adapter_config.json"
        adapter_config.write_text(json.dumps({**json.loads(adapter_config.read_text()),
                                              "base_model_name_or_path": model_name(task.config.model)}, indent=2))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    manifest = {
        "method": method,
        "base_model": model_name(task.config.model),
        "base_params": backend.n_params,
        "task": task.config.name,
        "data_hash": data.hash,
        "training_config": params.model_dump(mode="json"),
        "packages": package_versions(("torch", "transformers", "peft", "accelerate", "trl", "bitsandbytes")),
        # What `harness gate` checks before loading: an altered or truncated file is refused.
        "files": file_digests(final),
        "created_at": utc_now(),
        "training": {
            "wall_s": wall.s,
            "resumed_from_step": int(Path(last).name.split("-")[-1]) if last else 0,
            "steps": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            "train_examples": len(train_rows),
            "validation_examples": len(val_rows),
            "tokens_seen": tokens,
            "tokens_per_s": tokens / wall.s if wall.s else None,
            "flops": training_flops(backend.n_params, tokens, method),
            "flops_formula": FLOPS_FORMULA[method],
            "peak_memory_mb": peak_memory_mb(),
            "trainable_params": n_trainable,
            "adapter_bytes": sum(f.stat().st_size for f in final.iterdir() if f.is_file()),
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else result.training_loss,
            "best_eval_loss": trainer.state.best_metric,
            "loss_history": losses,
            **facts,
        },
    }
    # The weights count as finished only once this exists, so it must never appear half-written.
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))
    # Moved aside before removal: a kill while removing must not leave a half-removed checkpoint
    # that still looks complete for a rerun to resume from.
    removed = out / ".checkpoints-removed"
    shutil.rmtree(removed, ignore_errors=True)
    if checkpoints.exists():
        checkpoints.rename(removed)
    shutil.rmtree(removed, ignore_errors=True)
    return manifest


class FineTuned(Component):
    """A weights method that trains: `lora` and `full` differ only in what they make trainable; `dpo`
    in its rows and its Trainer too."""

    method = ""

    def __init__(self, config: TrainingConfig, task: LoadedTask, where: str):
        super().__init__(config, task, where)
        self.messages: Messages | None = None
        self.prompt_key: dict | None = None

    def trainable(self, model):
        raise NotImplementedError

    def rows(self, data: TaskData, backend: HasWeights) -> tuple[list[dict], list[dict], dict]:
        """The training and validation rows, and facts about them for the training record."""
        return (*training_rows(self.task, data, backend, self.config, self.messages, self.where), {})

    def trainer(self, model, args: dict, train_rows: list[dict], val_rows: list[dict], backend: HasWeights):
        return sft_trainer(model, args, train_rows, val_rows, backend)

    def train_with(self, messages: Messages, prompt_key: dict) -> None:
        """Train on the arm's own prompts (its retrieved passages), keyed by what they depend on."""
        self.messages, self.prompt_key = messages, prompt_key

    def output_dir(self, data: TaskData) -> Path:
        return weights_dir(self.task, self.method, self.config, data.hash, self.prompt_key)

    def check_prompts(self, data: TaskData, backend: HasWeights) -> None:
        """Before any run is stored, the options are known to transformers, the training examples are
        enough and each fits max_length. A prompt with retrieved passages needs the index: `prepare`
        checks those when it trains."""
        check_training_options(self.config, self.where)
        if self.messages is None and not (self.output_dir(data) / "manifest.json").is_file():
            training_rows(self.task, data, backend, self.config, None, self.where)

    def _train(self, data: TaskData, backend: HasWeights, out: Path, progress: bool) -> dict | None:
        return train_weights(self, data, backend, out, progress)

    def train(self, data: TaskData, backend: HasWeights, output: Path | None, progress: bool) -> Training | None:
        out = output or self.output_dir(data)
        if self._train(data, backend, out, progress) is None:
            return None
        # Read back through the checks compare applies, so what is reported is what compare will load.
        return inspect(out, self.task).training(reused=False)

    def prepare(self, data: TaskData, backend: HasWeights) -> HasWeights:
        from harness.backends.local import TransformersBackend

        folder = self.output_dir(data)
        self.reused = (folder / "manifest.json").is_file()
        if not self.reused:
            self._train(data, backend, folder, progress=True)
        self.checkpoint = inspect(folder, self.task)
        return TransformersBackend(load(self.checkpoint, backend.model), backend.tokenizer,
                                   name=f"{backend.name}+{self.method}")

    def record(self) -> dict:
        return {"weights_path": str(self.checkpoint.folder), "manifest": self.checkpoint.manifest}

    def summary(self, examples) -> dict:
        return {"training": self.checkpoint.training(reused=self.reused)}

    def planned_steps(self, data: TaskData) -> tuple[int, bool]:
        """`harness validate`'s estimate: optimizer steps a training would take (before early stopping),
        and whether these weights are trained already (their folder holds a manifest)."""
        params = self.config
        train, _ = training_split(self.task, data, params, self.where)
        steps = math.ceil(math.ceil(len(train) / params.batch_size) / params.grad_accum * params.epochs)
        return (min(steps, params.max_steps) if params.max_steps else steps,
                (self.output_dir(data) / "manifest.json").is_file())
