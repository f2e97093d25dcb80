"""Full fine-tuning: every weight of the model trained with the HF Trainer (see
strategies/finetune.py). On CPU in fp32 the default 135M model needs about 2 GB for weights,
gradients and AdamW state. Forgetting is measured as for LoRA, so the report shows what training
every weight costs in general ability (Biderman et al. 2024, "LoRA Learns Less and Forgets Less")."""

from __future__ import annotations

from pydantic import Field

from harness.errors import HarnessError
from strategies.finetune import FineTuned, TrainingConfig


class Config(TrainingConfig):
    # Every weight moves: a LoRA-sized rate would wreck the model in a few steps.
    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate (see lr_scheduler)")


class Weights(FineTuned):
    method = "full"

    def check_prompts(self, data, backend) -> None:
        if backend.quantized:
            raise HarnessError(self.where, "full fine-tuning trains every weight, and quantised weights cannot be "
                                           "trained; use lora on the quantised model (QLoRA), or drop quantization")
        super().check_prompts(data, backend)

    def trainable(self, model):
        model.requires_grad_(True)
        return model
