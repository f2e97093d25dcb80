"""DPO: direct preference optimisation (Rafailov et al. 2023) of a LoRA adapter with trl's
`DPOTrainer`, `weights: {dpo: {beta, ...}}`.

Each training example gives a pair of answers to its prompt (rendered as the runner renders it):
- from the task's `chosen` / `rejected` columns, where a row has them;
- otherwise the gold answer is chosen and the base model's own answer (greedy) is rejected, when
  that answer is wrong by the task's headline metric. A right answer makes no pair.
The training record says how many pairs came each way (`preference_pairs`).

With `sft_first: true` the adapter is first trained by supervised LoRA on the same examples (the
`lora` arm's weights with these parameters, reused when cached), then DPO continues on it with the
SFT adapter as its reference, as the DPO paper does. Without it the reference is the base model.
The adapter is then evaluated and probed for forgetting like any weights method's."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from harness.config import DEFAULT_BATCH_SIZE, model_key
from harness.errors import HarnessError
from harness.files import atomic_write_text, cache_dir
from harness.metrics import score
from harness.prompting import build_messages, render
from strategies import lora
from strategies.finetune import FineTuned, training_split


class Config(lora.Config):
    # DPO moves an adapter much less per step than supervised loss does; trl's default rate (1e-6)
    # is for full models, this is LoRA's usual DPO rate.
    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate (see lr_scheduler)")
    beta: float = Field(0.1, gt=0, description="how far from the reference the policy may move (higher: less)")
    loss_type: Literal["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                       "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm"] = Field(
        "sigmoid", description="trl's DPO loss: sigmoid (the paper's), ipo, hinge, robust, ...")
    sft_first: bool = Field(False, description="train the adapter with supervised LoRA first, then DPO on it")
    chosen: str = Field("chosen", description="column of a preferred answer, where the data has one")
    rejected: str = Field("rejected", description="column of a dispreferred answer, where the data has one")


class Weights(FineTuned):
    method = "dpo"

    def trainable(self, model):
        if not self.config.sft_first:
            return lora.adapted(model, self.config, self.where)
        from peft import PeftModel

        # The SFT adapter, trained (or reused) as a lora arm with these parameters would be, at LoRA's
        # own learning rate: DPO's would barely move a fresh adapter.
        shared = set(lora.Config.model_fields) - {"learning_rate"}
        sft = lora.Weights(lora.Config(**self.config.model_dump(include=shared)), self.task, self.where)
        sft.messages, sft.prompt_key = self.messages, self.prompt_key
        folder = sft.output_dir(self._data)
        if not (folder / "manifest.json").is_file():
            sft._train(self._data, self._backend, folder, progress=False)
        return PeftModel.from_pretrained(lora.prepared(model, self.config), folder / "adapter", is_trainable=True)

    def rows(self, data, backend):
        # Kept for `trainable`, which train_weights calls next: sft_first trains on the same data.
        self._data, self._backend = data, backend
        train, validation = training_split(self.task, data, self.config, self.where)
        train_pairs, counts = self._pairs(train, backend)
        val_pairs, _ = self._pairs(validation, backend)
        if not train_pairs:
            raise HarnessError(self.where, f"no preference pairs: no training row has a '{self.config.rejected}' "
                                           f"column and the base model answered every training example right")
        if not val_pairs:  # the Trainer's early stopping needs a validation loss
            val_pairs = train_pairs[:1]
        return train_pairs, val_pairs, {"preference_pairs": counts}

    def _pairs(self, examples, backend) -> tuple[list[dict], dict]:
        """(prompt, chosen, rejected) text rows for trl, and how many came from each source."""
        task, cfg = self.task, self.config
        turns = self.messages or (lambda ex: build_messages(task, ex, backend))
        prompts = [render(task, backend, turns(ex)) for ex in examples]
        given = [bool(str(ex.row.get(cfg.rejected) or "").strip()) for ex in examples]
        todo = [i for i, g in enumerate(given) if not g]
        answers = dict(zip(todo, self._base_answers([prompts[i] for i in todo], backend)))
        metric = task.config.metric_names[0]
        rows, right = [], 0
        for i, (ex, prompt) in enumerate(zip(examples, prompts)):
            if given[i]:
                chosen, rejected = str(ex.row.get(cfg.chosen) or ex.target), str(ex.row[cfg.rejected])
            elif score(metric, [answers[i]], [ex.references])[0] >= 1.0:
                right += 1
                continue
            else:
                chosen, rejected = ex.target, answers[i]
            # trl appends the end-of-turn token to both answers, as a chat answer is scored here.
            rows.append({"prompt": prompt.text, "chosen": prompt.answer_prefix + chosen,
                         "rejected": prompt.answer_prefix + rejected})
        return rows, {"from_columns": sum(given), "from_base_answers": len(todo) - right,
                      "base_answered_right": right}

    def _base_answers(self, prompts, backend) -> list[str]:
        """The base model's greedy answers to `prompts`, as the runner reads them (a short answer's
        first line). Kept in the cache folder: another DPO arm, or a retrained one, asks again."""
        from harness.data import config_fingerprint

        cfg = self.task.config
        texts = [p.text for p in prompts]
        kept = cache_dir() / "base_answers" / (config_fingerprint({
            "model": model_key(cfg.model), "prompts": texts, "max_new_tokens": cfg.limits.max_new_tokens,
            **({"stop": cfg.limits.stop} if cfg.limits.stop else {})}) + ".json")
        if kept.is_file():
            return json.loads(kept.read_text())
        size = cfg.limits.batch_size if isinstance(cfg.limits.batch_size, int) else DEFAULT_BATCH_SIZE
        answers = []
        for start in range(0, len(prompts), size):
            for g in backend.generate(prompts[start:start + size], cfg.limits.max_new_tokens, stop=cfg.limits.stop):
                answers.append(g.text if cfg.type == "generation" else next(
                    (line.strip() for line in g.text.splitlines() if line.strip()), ""))
        atomic_write_text(kept, json.dumps(answers))
        return answers

    def trainer(self, model, args, train_rows, val_rows, backend):
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        cfg = self.config
        return DPOTrainer(model=model, args=DPOConfig(**args, beta=cfg.beta, loss_type=[cfg.loss_type],
                                                      max_length=cfg.max_length),
                          train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(val_rows),
                          processing_class=backend.tokenizer)
