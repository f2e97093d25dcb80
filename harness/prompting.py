"""Turning examples into prompts: the one place the task's template is applied and a prompt format
(chat or raw) is rendered.

- `chat`: the model's chat template; demonstrations are user/assistant turns and an answer is
  scored as the assistant's reply, end-of-turn token included.
- `raw`: lm-evaluation-harness's convention, so its numbers can be reproduced: no chat template,
  the system text then demonstrations as `prompt + target_delimiter + answer`, joined by
  `fewshot_delimiter`, then the query; an answer is scored as the continuation
  `target_delimiter + answer` with no end-of-turn token."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from harness.backends.base import Backend, Prompt, Scorer
from harness.errors import HarnessError
from harness.examples import Example

if TYPE_CHECKING:
    from harness.task import LoadedTask


# Zhao et al. 2021 ("Calibrate Before Use"): inputs with no content, whose label probabilities
# show the bias the prompt alone puts on each label.
CONTENT_FREE = ("N/A", "", "[MASK]")


@lru_cache(maxsize=16)
def _compile(template: str):
    import jinja2

    # StrictUndefined: a template naming a column the data lacks fails loudly instead of rendering "".
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(template)


def check_template(template: str, examples: list[Example], where: str) -> None:
    """Every example renders: the template names only columns the data has, and uses them as it can
    (before any run starts, where rendering mid-run would leave a run half-written)."""
    render_row = _compile(template).render
    for ex in examples:
        try:
            render_row(**ex.row)
        except Exception as e:  # jinja2's UndefinedError, or a filter applied to the wrong type
            raise HarnessError(where, f"cannot be rendered for example '{ex.id}': {e} (its columns: "
                                      f"{', '.join(ex.row)})") from None


def scoring(task: LoadedTask, backend: Backend) -> Literal["loglikelihood", "generate"] | None:
    """How a classification arm picks its label (None for other task types)."""
    cfg = task.config
    if cfg.type != "classification":
        return None
    return cfg.prompt.scoring or ("loglikelihood" if isinstance(backend, Scorer) else "generate")


def answer_room(task: LoadedTask, backend: Backend) -> int:
    """Tokens the answer takes after the prompt: the longest label and its delimiter, or the
    generation budget."""
    cfg = task.config
    if scoring(task, backend) == "loglikelihood":
        return 1 + max(backend.count_tokens(cfg.labels))
    return cfg.limits.max_new_tokens


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


def render(task: LoadedTask, backend: Backend, messages: list[dict[str, str]]) -> Prompt:
    """The text the model is given, in the task's prompt format, and how answers continue it."""
    cfg = task.config.prompt
    if cfg.format == "chat":
        return backend.render(messages)
    parts, shots = [], []
    for turn in messages:
        if turn["role"] == "system":
            parts.append(turn["content"] + "\n\n")
        elif turn["role"] == "assistant":
            shots[-1] += cfg.target_delimiter + turn["content"]
        else:
            shots.append(turn["content"])
    text = "".join(parts) + cfg.fewshot_delimiter.join(shots)
    return Prompt(text, backend.count_tokens([text])[0], answer_prefix=cfg.target_delimiter, end_of_turn=False)


def content_free(example: Example, input_field: str) -> list[Example]:
    """`example` with its input replaced by each content-free text (the other columns kept, so a
    template naming them still renders)."""
    return [Example(f"content-free-{i}", text, example.target, {**example.row, input_field: text})
            for i, text in enumerate(CONTENT_FREE)]
