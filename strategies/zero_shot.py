"""Zero-shot: the task's instruction alone. The baseline every other strategy must beat."""

from __future__ import annotations

from harness.prompting import build_messages
from harness.strategy import BaseStrategy, Prompted, StrategyConfig


class Config(StrategyConfig):
    pass


class Strategy(BaseStrategy):
    name = "zero_shot"

    def messages(self, example):
        return Prompted(build_messages(self.task, example, self.backend))
