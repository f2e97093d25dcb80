"""An arm as a strategy: its axes' components (harness/armspec.py) composed into one prompt and one
model, behind the protocol the runner executes (harness/strategy.py).

The prompt is the system turn, the demonstrations, then the question with the retrieved passages
before it; passages fill what the model's context leaves after everything else. A prompt too long
for the context has its input cut to fit, or is refused (`prompt.overflow`). A fine-tuned arm
that retrieves trains on its prompts with their passages (see strategies/finetune.py), so weights
that will be served with passages learn to use them."""

from __future__ import annotations

from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import registry
from harness.armspec import ArmSpec
from harness.backends.base import Backend, Scorer
from harness.config import model_label
from harness.errors import HarnessError
from harness.examples import Example, Prompted, TaskData
from harness.prompting import answer_room, build_messages, check_template, render, scoring
from harness.strategy import Component, Strategy, TrainedWeights

if TYPE_CHECKING:
    from harness.results import Training
    from harness.task import LoadedTask


class Arm:
    def __init__(self, spec: ArmSpec, task: LoadedTask, parts: dict[str, Component]):
        self.spec, self.name, self.task, self.parts = spec, spec.name, task, parts
        self.weights = spec.weights_method
        self.context, self.demos = parts.get("context"), parts.get("demos")
        self.reserved = 0  # tokens each prompt leaves for retrieved passages, once the index is built
        # Each eval example as `prepare` fitted it: the runner's prompt building then does not
        # render and count every prompt a second time.
        self.fitted: dict[Example, tuple[Example, int]] = {}

    def fingerprint(self) -> dict[str, Any]:
        return {f"{axis}_inputs": fp for axis, part in self.parts.items() if (fp := part.fingerprint())}

    def check(self) -> None:
        for part in self.parts.values():
            part.check()

    def check_prompts(self, data: TaskData, backend: Backend) -> None:
        """Before any run is stored: every train and eval example renders, every eval prompt fits
        the model's context (`fit`), and weights that train have enough examples, each fitting
        their max_length. Demonstrations chosen per question and retrieved passages need the
        prepared arm: `prepare` checks those prompts before its run starts."""
        self.backend = backend
        room, context = answer_room(self.task, backend), backend.context_length
        if room >= context:
            field = "limits.max_new_tokens" if self.task.config.type != "classification" else "labels"
            raise HarnessError(f"{self.task.path}: {field}", f"the answer takes up to {room} tokens, which leaves "
                                                             f"no room for a prompt in the model's {context}-token "
                                                             f"context")
        field = "prompt.template" if "template" not in self.spec.prompt else f"strategies.{self.name}.prompt.template"
        check_template(self.task.config.prompt.template, list(chain(data.train, data.eval, data.unlabeled)),
                       f"{self.task.path}: {field}")
        self._check_backend(data, backend)
        fixed = self.demos is None or self.demos.config.select != "similar"
        if fixed and self.demos is not None:
            self.demos.prepare(data)
        # Each eval prompt's tokens without passages (and, with demonstrations chosen per question,
        # without them): `harness validate` estimates from these.
        self.checked_tokens = [self.fit(ex, self._demos_for(ex) if fixed else [])[1] for ex in data.eval]
        if "weights" in self.parts:
            self.parts["weights"].check_prompts(data, backend)

    def _check_backend(self, data: TaskData, backend: Backend) -> None:
        """The arm asks only what its model's backend can do (weights: see armspec.parse_arm)."""
        path, prompt = self.task.path, self.task.config.prompt
        label = model_label(self.spec.model)
        how = scoring(self.task, backend)
        if how == "loglikelihood":
            if not isinstance(backend, Scorer):
                raise HarnessError(f"{path}: {self._prompt_field('scoring')}",
                                   f"{label} gives no log-likelihoods (a hosted model gives them only with "
                                   f"logprobs: true); use scoring: generate")
            if render(self.task, backend, build_messages(self.task, data.eval[0], backend)).messages is not None:
                raise HarnessError(f"{path}: {self._prompt_field('format')}",
                                   f"{label} scores labels over HTTP, which needs format: raw (the completions "
                                   f"endpoint applies no chat template); or use scoring: generate")
        if prompt.calibrate and how != "loglikelihood":
            raise HarnessError(f"{path}: {self._prompt_field('calibrate')}",
                               "calibration needs the labels' log-likelihoods, and this arm generates its answer")

    def _prompt_field(self, key: str) -> str:
        return f"strategies.{self.name}.prompt.{key}" if key in self.spec.prompt else f"prompt.{key}"

    def prepare(self, data: TaskData, backend: Backend) -> Backend:
        self.backend = backend
        if self.context is not None:
            self.context.prepare(data, backend)
            self.context.check_budget()
            self.reserved = self.context.reserve()
        if self.demos is not None:
            self.demos.prepare(data)
        self.fitted = {ex: self.fit(ex, self._demos_for(ex)) for ex in data.eval}
        weights = self.parts.get("weights")
        return backend if weights is None else weights.prepare(data, backend)

    def _demos_for(self, example: Example) -> list[Example]:
        return self.demos.for_example(example) if self.demos is not None else []

    def _tokens(self, example: Example, demos: list[Example]) -> int:
        return render(self.task, self.backend, build_messages(self.task, example, self.backend, demos=demos)).n_tokens

    def fit(self, example: Example, demos: list[Example]) -> tuple[Example, int]:
        """The example as it is prompted, and its prompt's tokens without passages. The prompt must
        leave the answer and the passages' reserve within the model's context; one that does not
        has its input cut by as many tokens (`prompt.overflow: truncate_input`) or is refused
        (`error`), naming the example and the numbers."""
        prompt = self.task.config.prompt
        context = self.backend.context_length
        limit = context - answer_room(self.task, self.backend) - self.reserved
        n = self._tokens(example, demos)
        if n <= limit:
            return example, n
        kept = (" and retrieved passages" if self.reserved else "")
        if prompt.overflow == "error":
            raise HarnessError(f"{self.task.path}: prompt.overflow",
                               f"example '{example.id}': its prompt takes {n} tokens, and the model's {context}-token "
                               f"context leaves {limit} after the answer{kept}; shorten the input "
                               f"(prompt.max_input_tokens), use fewer demonstrations, or set prompt.overflow: "
                               f"truncate_input")
        text = example.input
        if prompt.max_input_tokens:
            text = self.backend.truncate(text, prompt.max_input_tokens)
        keep = self.backend.count_tokens([text])[0]
        # Cut by the excess, then again by whatever re-tokenising at the cut added.
        while (keep := keep - (n - limit)) > 0:
            cut = self.backend.truncate(text, keep)
            field = self.task.config.fields.input
            example = replace(example, input=cut, row={**example.row, field: cut}, truncated_to=keep)
            if (n := self._tokens(example, demos)) <= limit:
                return example, n
        raise HarnessError(f"{self.task.path}: prompt",
                           f"example '{example.id}': even with no input, its prompt does not fit the model's "
                           f"{context}-token context beside the answer{kept} ({limit} tokens); use fewer "
                           f"demonstrations or a shorter system text")

    def compose(self, example: Example, demos: list[Example]) -> tuple[list[dict[str, str]], dict]:
        """The chat turns for one example with these demonstrations, and its trace (the retrieved
        passages, an input cut to fit)."""
        example, n_tokens = self.fitted.get(example) or self.fit(example, demos)
        context, trace = None, {}
        if self.context is not None:
            context, trace = self.context.passages(example, self.context.room(n_tokens))
        if example.truncated_to is not None:
            trace = {**trace, "input_truncated_to": example.truncated_to}
        return build_messages(self.task, example, self.backend, demos=demos, context=context), trace

    def messages(self, example: Example) -> Prompted:
        demos = self._demos_for(example)
        messages, trace = self.compose(example, demos)
        if self.demos is not None and self.demos.config.select == "similar":
            # Chosen per question (similar): each example's trace says which.
            trace = {**trace, "demo_ids": [d.id for d in demos]}
        return Prompted(messages, trace)

    def record(self) -> dict[str, Any]:
        out = {"axes": self.spec.axes()}
        for part in self.parts.values():
            out.update(part.record())
        return out

    def summary(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = {"truncated_inputs": sum("input_truncated_to" in e["extra"] for e in examples),
               "unmatched_answers": sum(bool(e["extra"].get("unmatched")) for e in examples)}
        for part in self.parts.values():
            out.update(part.summary(examples))
        return out


class TrainableArm(Arm):
    """An arm whose weights are trained here (lora, full): what `harness train` runs."""

    def __init__(self, spec: ArmSpec, task: LoadedTask, parts: dict[str, Component]):
        super().__init__(spec, task, parts)
        self.trained: TrainedWeights = parts["weights"]
        if self.context is not None:
            self.trained.train_with(lambda ex: self.compose(ex, demos=[])[0],
                                    {"context": spec.context.dump(), **self.context.fingerprint()})

    def output_dir(self, data: TaskData) -> Path:
        return self.trained.output_dir(data)

    def train(self, data: TaskData, backend: Backend, output: Path | None, progress: bool) -> Training | None:
        self.backend = backend
        if self.context is not None:
            self.context.prepare(data, backend)
            self.reserved = self.context.reserve()
        return self.trained.train(data, backend, output, progress)


def build(spec: ArmSpec, task: LoadedTask) -> Strategy:
    """The strategy that runs one arm: a plugin's own, or the arm composed from its axes."""
    if spec.plugin:
        return registry.plugin_class(spec.plugin.method)(spec.plugin.config, task)
    task = task.for_arm(spec)
    parts = {c.axis: registry.component_class(c.axis, c.method)(c.config, task, c.where)
             for c in spec.components()}
    return (TrainableArm if isinstance(parts.get("weights"), TrainedWeights) else Arm)(spec, task, parts)
