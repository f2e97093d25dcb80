"""LoRA: low-rank adapters trained with peft (see strategies/finetune.py for the training itself),
merged into a copy of the base for evaluation, so inference costs exactly what the base costs.

On a model loaded in 4 or 8 bits (`model: {quantization: {bits: 4}}`) this is QLoRA: the base is
prepared with peft's `prepare_model_for_kbit_training` (norms in fp32, inputs that carry gradients)
and the adapter is evaluated as it is served, unmerged on the quantised base (harness/checkpoints.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness.errors import HarnessError
from strategies.finetune import FineTuned, TrainingConfig


class Config(TrainingConfig):
    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA branch")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt, or every linear layer but the output head")

    @model_validator(mode="after")
    def _lists_are_not_empty(self):
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise ValueError("target_modules: name at least one module, or use 'all-linear'")
        return self


class Weights(FineTuned):
    method = "lora"

    def trainable(self, model):
        return adapted(model, self.config, self.where)


def prepared(model, cfg: TrainingConfig):
    """`model` ready to carry a trained adapter: a quantised one through QLoRA's preparation."""
    from peft import prepare_model_for_kbit_training

    if getattr(model, "hf_quantizer", None) is None:
        return model
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing,
                                           gradient_checkpointing_kwargs={"use_reentrant": False})


def adapted(model, cfg: Config, where: str):
    """`model` with a fresh LoRA adapter to train."""
    from peft import LoraConfig, get_peft_model

    model = prepared(model, cfg)
    lora = LoraConfig(task_type="CAUSAL_LM", r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=cfg.target_modules)
    try:
        return get_peft_model(model, lora)
    except ValueError as e:
        raise HarnessError(f"{where}.target_modules", str(e).splitlines()[0]) from None
