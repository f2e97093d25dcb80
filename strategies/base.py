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

    def prepare(self, data: TaskData, backend: Backend) -> Backend:
        """One-time work before evaluation (pick examples, build an index, train).

        Returns the backend to evaluate with: the given one, or an adapted model."""
        ...

    def messages(self, example: Example) -> list[dict[str, str]]:
        """The chat turns sent for one eval example."""
        ...

    def record(self) -> dict[str, Any]:
        """What this strategy chose, stored with the run (e.g. the few-shot example ids)."""
        ...
