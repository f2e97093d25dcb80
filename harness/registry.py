"""Strategy registry: a lazy name -> module map, plus the `ft_harness.strategies` entry-point group so
an installed package can register its own strategy.

The map names modules instead of importing them, so reading the list (for `--help`, or to
validate a task file) never imports torch. A strategy module exposes `Config` (a pydantic
StrategyConfig) and `Strategy` (see harness/strategy.py)."""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "ft_harness.strategies"

_BUILTIN = {
    "zero_shot": "strategies.zero_shot",
    "few_shot": "strategies.few_shot",
    "rag": "strategies.rag",
    "lora": "strategies.lora",
    "checkpoint": "strategies.checkpoint",
}


@functools.cache
def _registry() -> dict[str, str]:
    # A plugin's entry point is `name = "package.module"`; built-in names cannot be shadowed.
    plugins = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**plugins, **_BUILTIN}


def known_strategies() -> list[str]:
    return list(_registry())


def _module(name: str):
    return importlib.import_module(_registry()[name])


def config_class(name: str):
    """The pydantic model that validates the strategy's parameters in the task YAML."""
    return _module(name).Config


def build(name: str, config, task):
    """An instance of the named strategy."""
    return _module(name).Strategy(config, task)
