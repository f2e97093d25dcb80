"""An existing fine-tuned checkpoint, evaluated as it is with the zero-shot prompt.

This is how `harness gate` evaluates a candidate (and a baseline checkpoint), and how a compare
includes a model fine-tuned elsewhere: `checkpoint: {path: adapters/v2}` in the task's strategies.
The checkpoint is verified when the strategy is built (see harness/checkpoints.py), before any run
is started, and the digest of every file is part of the run key: a retrained or altered checkpoint
at the same path is a new run, never a stale reuse.
"""

from __future__ import annotations

from pydantic import Field

from harness.checkpoints import inspect, load
from harness.prompting import build_messages
from harness.results import CheckpointInfo
from harness.strategy import BaseStrategy, Prompted, StrategyConfig


class Config(StrategyConfig):
    path: str = Field(description="checkpoint folder, relative to the task file: a harness or peft LoRA "
                                  "adapter, or a full model (safetensors only)")


class Strategy(BaseStrategy):
    name = "checkpoint"
    weights = "checkpoint"

    def __init__(self, config: Config, task):
        super().__init__(config, task)
        self.checkpoint = inspect(task.resolve(config.path), task)

    def fingerprint(self):
        return {"checkpoint": self.checkpoint.digests}

    def prepare(self, data, backend):
        from harness.models import TransformersBackend

        self.backend = backend
        return TransformersBackend(load(self.checkpoint, backend.model), backend.tokenizer,
                                   name=f"{backend.name}+{self.checkpoint.folder.name}")

    def messages(self, example):
        return Prompted(build_messages(self.task, example, self.backend))

    def record(self):
        return {"checkpoint": self.checkpoint.describe()}

    def summary(self, examples):
        described = {k: v for k, v in self.checkpoint.describe().items() if k != "digests"}
        out = {"checkpoint": CheckpointInfo(**described)}
        # A harness adapter knows what its training cost, so the cost model and the verdict can weigh
        # it like the lora strategy's own.
        training = self.checkpoint.training(reused=True)
        if training is not None:
            out["training"] = training
        return out
