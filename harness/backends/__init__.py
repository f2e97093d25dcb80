"""Backends: where a model runs, behind the one interface strategies and the runner talk to.

Every backend renders chat turns into a prompt, counts and truncates tokens, knows its context
length and generates. Only some can do more, and say so as capabilities:

- `can_score`: the log-likelihood of continuations (rank classification, calibration);
- `has_weights`: weights in this process, to fine-tune and to measure forgetting on;
- `n_params`: the parameter count (None when the server does not tell it).

`local` runs a transformers model in this process and has all three. `hosted` talks to an
OpenAI-compatible server (a provider, vLLM, TGI, llama.cpp, `transformers serve`); it scores only
when the task says the server returns prompt log-probabilities (`logprobs: true`).

A task's `model:` is a string (a local model) or a `HostedModel` mapping. This module imports
nothing heavy: reading a task file never loads torch or an HTTP client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Protocol, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat,
                      PositiveInt, Tag)


@dataclass
class Prompt:
    text: str
    n_tokens: int
    # How an answer continues the prompt: a chat prompt ends where the assistant's reply starts and
    # the reply ends its turn; a raw one is continued by " " + answer (see harness/prompting.py).
    answer_prefix: str = ""
    end_of_turn: bool = True
    # The chat turns, for a backend that applies the chat template itself (a hosted model's server);
    # None for a raw prompt, which is sent as text.
    messages: list[dict[str, str]] | None = None


@dataclass
class Scored:
    logprobs: list[float]  # one per choice: sum of the choice's token log-probabilities
    prompt_tokens: int
    latency_ms: float | None = None  # the example's own requests, when it had its own (hosted)
    cached_tokens: int = 0  # of prompt_tokens, those served from a cache of the prompt's prefix


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    output_tokens: int
    latency_ms: float | None = None  # the example's own request, when it had its own (hosted)
    cached_tokens: int = 0  # of prompt_tokens, those served from a cache of the prompt's prefix


class Backend(Protocol):
    name: str
    n_params: int | None
    can_score: bool
    has_weights: bool

    @property
    def context_length(self) -> int: ...
    def render(self, messages: list[dict[str, str]]) -> Prompt: ...
    def truncate(self, text: str, max_tokens: int) -> str: ...
    def count_tokens(self, texts: list[str]) -> list[int]: ...
    def generate(self, prompts: list[Prompt], max_new_tokens: int) -> list[Generation]: ...
    # Only when can_score:
    def loglikelihood(self, prompts: list[Prompt], choices: list[str]) -> list[Scored]: ...


class HostedModel(BaseModel):
    """`model:` as a mapping: a model behind an OpenAI-compatible HTTP API.

    Only what changes the answers is part of a run's identity; the concurrency, timeouts and prices
    are excluded from its dump, so changing them reuses every stored run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["openai"] = Field(description="the protocol: an OpenAI-compatible API")
    name: str = Field(min_length=1, description="the model's id on the server (the requests' `model`)")
    base_url: str = Field(pattern=r"^https?://", description="the API's root, e.g. https://api.openai.com/v1 or "
                                                             "http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                    description="the environment variable holding the API key (the key itself "
                                                "is never written in a task file, a store or a log); none: a "
                                                "server that needs no key")
    logprobs: bool = Field(False, description="the server returns prompt log-probabilities (completions with "
                                              "echo, as vLLM and llama.cpp do): classification ranks labels by "
                                              "log-likelihood; otherwise it generates and matches a label")
    context_length: PositiveInt = Field(8192, description="the model's context, in tokens")
    tokenizer: str | None = Field(None, description="a local tokenizer of the same model (built-in alias, folder "
                                                    "or hub id) to count and cut prompt tokens exactly; none: "
                                                    "about 4 characters per token")
    max_concurrency: PositiveInt = Field(4, exclude=True, description="requests in flight at once")
    timeout_s: PositiveFloat = Field(120, exclude=True, description="seconds before a request is abandoned")
    max_retries: NonNegativeInt = Field(6, exclude=True, description="retries, with backoff, on 429, 5xx and "
                                                                      "timeouts")
    usd_per_mtok_input: NonNegativeFloat = Field(exclude=True, description="price per million prompt tokens")
    usd_per_mtok_output: NonNegativeFloat = Field(exclude=True, description="price per million output tokens")
    usd_per_mtok_cached_input: NonNegativeFloat | None = Field(
        None, exclude=True, description="price per million prompt tokens the server reports as served from its "
                                        "prompt cache; default: the input price")


def _kind(value) -> str:
    return "hosted" if isinstance(value, (dict, HostedModel)) else "local"


# A mapping is a hosted model and anything else a local model's name, so a malformed mapping is
# reported by its own fields rather than as "not a string".
ModelSpec = Annotated[Union[Annotated[str, Tag("local")], Annotated[HostedModel, Tag("hosted")]],
                      Discriminator(_kind)]


def model_label(model: str | HostedModel) -> str:
    """How tables, the store and the verdict name a model."""
    return model if isinstance(model, str) else model.name


def model_key(model: str | HostedModel) -> str | dict:
    """What identifies a model in a run's key: the string, or the hosted model's answering fields."""
    return model if isinstance(model, str) else model.model_dump(mode="json")


def load_backend(model: str | HostedModel, base_dir: Path | None = None, where: str | None = None) -> Backend:
    """The backend that runs `model`, checked to work: a local model loaded, a hosted one asked once.
    `where` names the model's place in the task file for errors."""
    if isinstance(model, str):
        from harness.backends.local import load_local

        return load_local(model, base_dir)
    from harness.backends.hosted import HostedBackend

    return HostedBackend(model, base_dir, where or f"model {model.name}")
