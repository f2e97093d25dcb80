"""Registry: lazy name -> module maps of the components an arm is made of (harness/armspec.py), plus
the `ft_harness.strategies` entry-point group so an installed package can register a whole strategy
of its own; and the backend that runs a model.

The maps name modules instead of importing them, so reading them (for `--help`, or to validate a
task file) never imports torch. A component module exposes `Config` (a pydantic ComponentConfig)
and its component class: `Weights` for a weights method, `Context` for a context method. A plugin
module exposes `Config` and `Strategy` (see harness/strategy.py)."""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from harness.config import HostedModel

if TYPE_CHECKING:
    from harness.backends.base import Backend
    from harness.config import ComponentConfig, Model

ENTRY_POINT_GROUP = "ft_harness.strategies"

# Per axis, method -> module.
METHODS = {
    "weights": {"lora": "strategies.lora", "full": "strategies.full", "dpo": "strategies.dpo",
                "checkpoint": "strategies.checkpoint"},
    "context": {"retrieval": "strategies.rag.strategy"},
    "demos": {"demos": "strategies.demos"},
}
# The class each axis's module provides.
COMPONENT = {"weights": "Weights", "context": "Context", "demos": "Demos"}


@functools.cache
def plugins() -> dict[str, str]:
    """Whole strategies installed by other packages: `name = "package.module"`."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _module(axis: str, method: str) -> ModuleType:
    return importlib.import_module(METHODS[axis][method] if axis != "plugin" else plugins()[method])


def config_class(axis: str, method: str) -> type[ComponentConfig]:
    """The pydantic model that validates a component's (or a plugin's) parameters in the task YAML."""
    return _module(axis, method).Config


# The classes below are harness.strategy's kinds, left unnamed here: the strategy protocols name the
# task type, whose loading uses this registry.
def component_class(axis: str, method: str) -> type:
    """One axis's component class (a harness.strategy.Component)."""
    return getattr(_module(axis, method), COMPONENT[axis])


def plugin_class(name: str) -> type:
    """A plugin's whole strategy (a harness.strategy.Strategy)."""
    return _module("plugin", name).Strategy


def load_backend(model: Model, base_dir: Path | None = None, where: str | None = None) -> Backend:
    """The backend that runs `model`, checked to work: a local model (a name or a LocalModel) loaded
    with its options, a hosted one asked once. `where` names the model's place in the task file for
    errors."""
    if not isinstance(model, HostedModel):
        from harness.backends.local import load_local

        return load_local(model, base_dir, where)
    from harness.backends.hosted import HostedBackend, HostedScorer

    return (HostedScorer if model.logprobs else HostedBackend)(model, base_dir, where or f"model {model.name}")
