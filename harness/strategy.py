"""What every strategy provides. Strategies build prompts (and may adapt the model); the runner
alone executes and measures them, so every row of the comparison is measured the same way.

Every arm is run by harness/arm.py's strategy, composed of its axes' components; a plugin may
provide a whole strategy instead. The protocols live in the core and the strategies/ modules
implement them: the core never imports one except through the registry (harness/registry.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from harness.backends.base import Backend
    from harness.config import ComponentConfig
    from harness.examples import Example, Prompted, TaskData
    from harness.results import Training
    from harness.task import LoadedTask


class Strategy(Protocol):
    name: str
    # Which weights the strategy evaluates with: "base", or the kind of changed weights ("lora",
    # "full", "checkpoint"). The report row's `fine_tuned` follows from it.
    weights: str

    def fingerprint(self) -> dict[str, Any]:
        """What the results depend on beyond the parameters and the task data (e.g. a hash of the RAG
        corpus), folded into the store's run key so that a change makes a new run."""
        ...

    def prepare(self, data: TaskData, backend: Backend) -> Backend:
        """One-time work before evaluation (pick examples, build an index, train).

        Returns the backend to evaluate with: the given one, or an adapted model."""
        ...

    def messages(self, example: Example) -> Prompted:
        """The prompt for one eval example with its trace (called inside the runner's timing)."""
        ...

    def record(self) -> dict[str, Any]:
        """What this strategy chose for the run (e.g. the few-shot example ids), stored with it."""
        ...

    def summary(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Strategy-specific parts of the report row computed from the stored examples (`training`,
        `retrieval`, `checkpoint`; see harness/results.py ArmResult)."""
        ...


@runtime_checkable
class Checked(Protocol):
    """A strategy that checks its own input (a corpus, an embedder, a checkpoint) before any run
    starts; compare calls `check` on each strategy that has it."""

    def check(self) -> None: ...


@runtime_checkable
class ChecksPrompts(Protocol):
    """A strategy that checks its prompts against the data and the model before any run is stored
    (every example renders and fits the context): harness/arm.py's `Arm.check_prompts`."""

    def check_prompts(self, data: TaskData, backend: Backend) -> None: ...


@runtime_checkable
class Trainable(Protocol):
    """A strategy that trains weights on its own, without evaluating: what `harness train` runs
    (also under `accelerate launch`)."""

    def train(self, data: TaskData, backend: Backend, output: Path | None, progress: bool) -> Training | None:
        """Train into `output` (default: the cache folder compare reuses). Returns the training
        figures, or None on a process of a distributed run that does not write."""
        ...

    def output_dir(self, data: TaskData) -> Path:
        """Where the default `train` writes."""
        ...


class Component:
    """One axis of an arm (harness/armspec.py's ComponentSpec, built): a weights method (`Weights`:
    `prepare(data, backend)` returns the backend with those weights), a context method (`Context`:
    `prepare(data, backend)`, then `room` and `passages` per question) or the demonstrations
    (`Demos`). Defaults for the parts most components do not need."""

    def __init__(self, config: ComponentConfig, task: LoadedTask, where: str):
        # `where`: the component's place in the task file, for errors ("x.yaml: strategies.a.context.retrieval").
        self.config, self.task, self.where = config, task, where

    def fingerprint(self) -> dict[str, Any]:
        """Inputs beyond the parameters that the results depend on (a corpus's hash)."""
        return {}

    def check(self) -> None:
        """Fail on bad input before any run starts (a missing corpus or embedder)."""

    def check_prompts(self, data: TaskData, backend: Backend) -> None:
        """Fail before any run is stored on prompts the component makes that cannot be run (training
        examples that do not fit)."""

    def record(self) -> dict[str, Any]:
        return {}

    def summary(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return {}


Messages = Callable[["Example"], list[dict[str, str]]]


@runtime_checkable
class TrainedWeights(Trainable, Protocol):
    """A weights component trained here (lora, full). An arm that retrieves has it train on the arm's
    own prompts, passages included (`train_with`), so weights served with passages learn to use them."""

    def train_with(self, messages: Messages, prompt_key: dict) -> None: ...
