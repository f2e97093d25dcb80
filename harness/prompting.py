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

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.data import Example
    from harness.backends import Backend, Prompt
    from harness.task import LoadedTask


class PromptConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str | None = Field(None, description="system message (chat); raw: text placed before the prompt")
    template: str = Field(description="Jinja2 template of the user turn; every data column is a variable")
    max_input_tokens: PositiveInt | None = Field(None, description="truncate the input column to this many tokens")
    format: Literal["chat", "raw"] = Field("chat", description="chat: the model's chat template; raw: plain text "
                                                               "scored as lm-evaluation-harness does")
    target_delimiter: str = Field(" ", description="raw: between a prompt and its answer")
    fewshot_delimiter: str = Field("\n\n", description="raw: between demonstrations")
    calibrate: bool = Field(False, description="classification: contextual calibration from content-free inputs")
    scoring: Literal["loglikelihood", "generate"] | None = Field(
        None, description="classification: rank the labels by log-likelihood, or generate an answer and match it "
                          "to a label (an answer matching none is scored wrong); default: log-likelihood when the "
                          "model's backend gives it")
    overflow: Literal["truncate_input", "error"] = Field(
        "truncate_input", description="a prompt longer than the model's context leaves room for: cut its input "
                                      "column to fit (counted in the report), or refuse to run, naming the example")

    @field_validator("template")
    @classmethod
    def _compiles(cls, v: str) -> str:
        import jinja2

        try:
            jinja2.Environment().parse(v)
        except jinja2.TemplateSyntaxError as e:
            raise ValueError(f"template is not valid Jinja2 (line {e.lineno}): {e.message}") from None
        return v

    def training_key(self) -> dict:
        """What fine-tuning prompts depend on: calibration never, the raw delimiters only in raw."""
        out = self.model_dump(include={"system", "template", "max_input_tokens"})
        if self.format == "raw":
            out.update(self.model_dump(include={"format", "target_delimiter", "fewshot_delimiter"}))
        return out


# An arm's `prompt:` axis: any of the task's prompt settings, overridden for that arm.
PROMPT_FIELDS = tuple(PromptConfig.model_fields)

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
    return cfg.prompt.scoring or ("loglikelihood" if backend.can_score else "generate")


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
    from harness.backends import Prompt

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
    from harness.data import Example

    return [Example(f"content-free-{i}", text, example.target, {**example.row, input_field: text})
            for i, text in enumerate(CONTENT_FREE)]
