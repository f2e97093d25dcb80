"""Registry: lazy name -> module maps of the components an arm is made of (harness/armspec.py), plus
the `ft_harness.strategies` entry-point group so an installed package can register a whole strategy
of its own.

The maps name modules instead of importing them, so reading them (for `--help`, or to validate a
task file) never imports torch. A component module exposes `Config` (a pydantic StrategyConfig)
and its component class: `Weights` for a weights method, `Context` for a context method. A plugin
module exposes `Config` and `Strategy` (see harness/strategy.py)."""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "ft_harness.strategies"

# Per axis, method -> module.
AXES = {
    "weights": {"lora": "strategies.lora", "full": "strategies.full", "dpo": "strategies.dpo",
                "checkpoint": "strategies.checkpoint"},
    "context": {"retrieval": "strategies.rag"},
    "demos": {"demos": "strategies.demos"},
}
# The class each axis's module provides.
COMPONENT = {"weights": "Weights", "context": "Context", "demos": "Demos"}


@functools.cache
def plugins() -> dict[str, str]:
    """Whole strategies installed by other packages: `name = "package.module"`."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _module(axis: str, method: str):
    return importlib.import_module(AXES[axis][method] if axis != "plugin" else plugins()[method])


def config_class(axis: str, method: str):
    """The pydantic model that validates a component's (or a plugin's) parameters in the task YAML."""
    return _module(axis, method).Config


def component(axis: str, method: str, config, task, where: str):
    """An instance of one axis's component."""
    return getattr(_module(axis, method), COMPONENT[axis])(config, task, where)


def build_plugin(name: str, config, task):
    return _module("plugin", name).Strategy(config, task)
