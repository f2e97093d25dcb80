"""Zero-shot: the task's instruction alone. The baseline every other strategy must beat."""

from __future__ import annotations

from harness.prompting import build_messages
from strategies.base import BaseStrategy, StrategyConfig


class Config(StrategyConfig):
    pass


class Strategy(BaseStrategy):
    name = "zero_shot"

    def messages(self, example):
        return build_messages(self.task, example, self.backend)
