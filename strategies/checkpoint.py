"""An existing fine-tuned checkpoint as an arm's weights: `weights: {checkpoint: {path}}`, or the
`checkpoint: {path}` shorthand (the zero-shot prompt on the checkpoint).

This is how `harness gate` evaluates a candidate (and a baseline checkpoint), and how a compare
includes a model fine-tuned elsewhere. The checkpoint is verified when the arm is built (see
harness/checkpoints.py), before any run is started, and the digest of every file is part of the run
key: a retrained or altered checkpoint at the same path is a new run, never a stale reuse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from harness.backends.base import HasWeights
from harness.checkpoints import inspect, load
from harness.config import ComponentConfig
from harness.examples import TaskData
from harness.results import CheckpointInfo
from harness.strategy import Component

if TYPE_CHECKING:
    from harness.task import LoadedTask


class Config(ComponentConfig):
    path: str = Field(description="checkpoint folder, relative to the task file: a harness or peft LoRA "
                                  "adapter, or a full model (safetensors only)")


class Weights(Component):
    def __init__(self, config: Config, task: LoadedTask, where: str):
        super().__init__(config, task, where)
        self.checkpoint = inspect(task.resolve(config.path), task)

    def fingerprint(self):
        return {"checkpoint": self.checkpoint.digests}

    def prepare(self, data: TaskData, backend: HasWeights) -> HasWeights:
        from harness.backends.local import TransformersBackend

        return TransformersBackend(load(self.checkpoint, backend.model), backend.tokenizer,
                                   name=f"{backend.name}+{self.checkpoint.folder.name}")

    def record(self):
        return {"checkpoint": self.checkpoint.describe()}

    def summary(self, examples):
        described = {k: v for k, v in self.checkpoint.describe().items() if k != "digests"}
        out = {"checkpoint": CheckpointInfo(**described)}
        # Harness-trained weights know what their training cost, so the cost model and the verdict
        # can weigh them like the arm that trained them.
        training = self.checkpoint.training(reused=True)
        if training is not None:
            out["training"] = training
        return out
