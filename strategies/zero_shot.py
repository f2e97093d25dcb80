"""Zero-shot: the task's instruction alone. The baseline every other strategy must beat."""

from __future__ import annotations

from harness.prompting import build_messages
from strategies.base import StrategyConfig


class Config(StrategyConfig):
    pass


class Strategy:
    name = "zero_shot"

    def __init__(self, config: Config, task):
        self.config, self.task = config, task

    def prepare(self, data, backend):
        self.backend = backend
        return backend

    def messages(self, example):
        return build_messages(self.task, example, self.backend)

    def record(self):
        return {}
