"""Strategy registry. A strategy is one file in this folder plus one line in `_REGISTRY`.

The map names modules instead of importing them, so reading the list (for `--help`, or to
validate a task file) never imports torch.
"""

from __future__ import annotations

import importlib

_REGISTRY = {
    "zero_shot": "strategies.zero_shot",
    "few_shot": "strategies.few_shot",
    "rag": "strategies.rag",
    "lora": "strategies.lora",
    "checkpoint": "strategies.checkpoint",
}


def known_strategies() -> list[str]:
    return list(_REGISTRY)


def _module(name: str):
    return importlib.import_module(_REGISTRY[name])


def config_class(name: str):
    """The pydantic model that validates the strategy's parameters in the task YAML."""
    return _module(name).Config


def build(name: str, config, task):
    """An instance of the named strategy; each module exposes its class as `Strategy`."""
    return _module(name).Strategy(config, task)
