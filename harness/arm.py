"""An arm as a strategy: its axes' components (harness/armspec.py) composed into one prompt and one
model, behind the protocol the runner executes (harness/strategy.py).

The prompt is the system turn, the demonstrations, then the question with the retrieved passages
before it; passages fill what the model's context leaves after everything else. A fine-tuned arm
that retrieves trains on its prompts with their passages (see strategies/finetune.py), so weights
that will be served with passages learn to use them."""

from __future__ import annotations

from pathlib import Path

from harness import registry
from harness.armspec import ArmSpec
from harness.prompting import build_messages, render
from harness.strategy import Prompted, Trainable


class Arm:
    def __init__(self, spec: ArmSpec, task, parts: dict):
        self.spec, self.name, self.task, self.parts = spec, spec.name, task, parts
        self.weights = spec.weights_kind
        self.context, self.demos = parts.get("context"), parts.get("demos")
        weights = parts.get("weights")
        if self.context is not None and hasattr(weights, "train_with"):
            weights.train_with(lambda ex: self.compose(ex, demos=[])[0],
                               {"context": spec.context.dump(), **self.context.fingerprint()})

    def fingerprint(self):
        return {f"{axis}_inputs": fp for axis, part in self.parts.items() if (fp := part.fingerprint())}

    def check(self) -> None:
        for part in self.parts.values():
            part.check()

    def prepare(self, data, backend):
        self.backend = backend
        if self.context is not None:
            self.context.prepare(data, backend)
        if self.demos is not None:
            self.demos.prepare(data)
        if self.context is not None:
            self.context.check_budget({ex.id: self._room(ex, self._demos_for(ex)) for ex in data.eval})
        weights = self.parts.get("weights")
        return backend if weights is None else weights.prepare(data, backend)

    def _demos_for(self, example) -> list:
        return self.demos.for_example(example) if self.demos is not None else []

    def _room(self, example, demos) -> int:
        prompt = build_messages(self.task, example, self.backend, demos=demos)
        return self.context.room(render(self.task, self.backend, prompt).n_tokens)

    def compose(self, example, demos) -> tuple[list[dict[str, str]], dict]:
        """The chat turns for one example with these demonstrations, and the retrieval trace."""
        context, trace = None, {}
        if self.context is not None:
            context, trace = self.context.passages(example, self._room(example, demos))
        return build_messages(self.task, example, self.backend, demos=demos, context=context), trace

    def messages(self, example):
        demos = self._demos_for(example)
        messages, trace = self.compose(example, demos)
        if self.demos is not None and self.demos.config.select == "similar":
            # Chosen per question (similar): each example's trace says which.
            trace = {**trace, "demo_ids": [d.id for d in demos]}
        return Prompted(messages, trace)

    def record(self):
        out = {"axes": self.spec.axes()}
        for part in self.parts.values():
            out.update(part.record())
        return out

    def summary(self, examples):
        out = {}
        for part in self.parts.values():
            out.update(part.summary(examples))
        return out


class TrainableArm(Arm):
    """An arm whose weights are trained here (lora, full): what `harness train` runs."""

    def output_dir(self, data) -> Path:
        return self.parts["weights"].output_dir(data)

    def train(self, data, backend, output: Path | None, progress: bool):
        self.backend = backend
        if self.context is not None:
            self.context.prepare(data, backend)
        return self.parts["weights"].train(data, backend, output, progress)


def build(spec: ArmSpec, task):
    """The strategy that runs one arm: a plugin's own, or the arm composed from its axes."""
    if spec.plugin:
        return registry.build_plugin(spec.plugin.method, spec.plugin.config, task)
    task = task.for_arm(spec)
    parts = {c.axis: registry.component(c.axis, c.method, c.config, task, c.where) for c in spec.components()}
    return (TrainableArm if isinstance(parts.get("weights"), Trainable) else Arm)(spec, task, parts)
