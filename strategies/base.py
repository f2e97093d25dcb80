"""What every strategy provides. Strategies build prompts (and may adapt the model); the runner
alone executes and measures them, so every row of the comparison is measured the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from harness.data import Example, TaskData
    from harness.models import Backend
    from harness.task import LoadedTask


class StrategyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Strategy(Protocol):
    name: str

    def __init__(self, config: StrategyConfig, task: LoadedTask) -> None: ...

    def fingerprint(self) -> dict[str, Any]:
        """What the results depend on beyond the parameters and the task data (e.g. a hash of the RAG
        corpus), folded into the store's run key so that a change makes a new run."""
        ...

    def prepare(self, data: TaskData, backend: Backend) -> Backend:
        """One-time work before evaluation (pick examples, build an index, train).

        Returns the backend to evaluate with: the given one, or an adapted model."""
        ...

    def messages(self, example: Example) -> list[dict[str, str]]:
        """The chat turns sent for one eval example (called inside the runner's timing)."""
        ...

    def trace(self, example: Example) -> dict[str, Any]:
        """What the model was shown for this example beyond the prompt (e.g. retrieved chunk
        ids), stored with the example. Called after `messages` for the same example."""
        ...

    def record(self) -> dict[str, Any]:
        """What this strategy chose for the run (e.g. the few-shot example ids), stored with it."""
        ...

    def summary(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Strategy-specific report fields computed from the stored examples (e.g. retrieval
        recall), merged into the strategy's report row."""
        ...


class BaseStrategy:
    """Defaults for the parts of the protocol most strategies do not need."""

    name = "base"

    def __init__(self, config: StrategyConfig, task: LoadedTask):
        self.config, self.task = config, task

    def fingerprint(self):
        return {}

    def prepare(self, data, backend):
        self.backend = backend
        return backend

    def trace(self, example):
        return {}

    def record(self):
        return {}

    def summary(self, examples):
        return {}
