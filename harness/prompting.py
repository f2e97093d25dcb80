"""Turning examples into chat turns: the one place the task's template is applied."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.data import Example
    from harness.models import Backend
    from harness.task import LoadedTask


@lru_cache(maxsize=16)
def _compile(template: str):
    import jinja2

    # StrictUndefined: a template naming a column the data lacks fails loudly instead of rendering "".
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(template)


def user_turn(task: LoadedTask, example: Example, backend: Backend) -> str:
    cfg = task.config
    row = dict(example.row)
    if cfg.prompt.max_input_tokens:
        row[cfg.fields.input] = backend.truncate(example.input, cfg.prompt.max_input_tokens)
    return _compile(cfg.prompt.template).render(**row).strip()


def build_messages(task: LoadedTask, example: Example, backend: Backend,
                   demos: list[Example] = (), context: str | None = None) -> list[dict[str, str]]:
    """System turn, then each demonstration as a user/assistant pair, then the query.

    `context` (retrieved passages) is placed before the query in the same user turn."""
    turns = []
    if task.config.prompt.system:
        turns.append({"role": "system", "content": task.config.prompt.system})
    for demo in demos:
        turns.append({"role": "user", "content": user_turn(task, demo, backend)})
        turns.append({"role": "assistant", "content": demo.target})
    query = user_turn(task, example, backend)
    if context:
        query = f"{context}\n\n{query}"
    turns.append({"role": "user", "content": query})
    return turns
