"""Backends: where a model runs, behind the one interface strategies and the runner talk to.

Every backend renders chat turns into a prompt, counts and truncates tokens, knows its context
length and generates. Only some can do more, and say so as capabilities:

- `can_score`: the log-likelihood of continuations (rank classification, calibration);
- `has_weights`: weights in this process, to fine-tune and to measure forgetting on;
- `n_params`: the parameter count (None when the server does not tell it).

`local` runs a transformers model in this process and has all three. `hosted` talks to an
OpenAI-compatible server (a provider, vLLM, TGI, llama.cpp, `transformers serve`); it scores only
when the task says the server returns prompt log-probabilities (`logprobs: true`).

A task's `model:` is a string (a local model with today's defaults), a `LocalModel` mapping (the same
with its precision, device and quantisation chosen) or a `HostedModel` mapping (`backend: openai`).
This module imports nothing heavy: reading a task file never loads torch or an HTTP client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Literal, Protocol, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat,
                      PositiveInt, Tag, field_validator)


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
    # `limits.batch_size: auto`: the batch size to run with, given the n longest prompts `prompts(n)`
    # and what is asked of them (the labels scored, or else max_new_tokens generated).
    def auto_batch_size(self, prompts: Callable[[int], list[Prompt]], labels: list[str] | None,
                        max_new_tokens: int) -> int: ...
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


class Quantization(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bits: Literal[4, 8] = Field(description="bitsandbytes weight quantisation: 4 (NF4 with double quantisation, "
                                            "QLoRA's) or 8 (LLM.int8)")


class LocalModel(BaseModel):
    """`model:` as a mapping without `backend`: a transformers model in this process, with the
    options real hardware needs. `model: NAME` is `model: {name: NAME}`, and shares its runs.

    The run key holds the fields that change what the model computes, and only where they differ
    from their defaults, so naming a model either way, or restating a default, reuses its runs. The
    device is not in it: like the machine itself, it changes speed, not the configuration (`dtype:
    auto` follows it, as it always did for a plain name; set `dtype` to pin the precision)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="built-in alias, local folder or Hugging Face hub id")
    revision: str | None = Field(None, min_length=1, description="a hub model's branch, tag or commit (pins its "
                                                                 "weights)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights and compute precision; auto: bfloat16 on a GPU that has it (else float16), "
                            "float32 on CPU")
    device: str = Field("auto", exclude=True, description="auto (the GPU if there is one), cpu, cuda or cuda:N")
    quantization: Quantization | None = Field(None, description="load the weights quantised by bitsandbytes "
                                                                "(needs a CUDA GPU); QLoRA is lora on 4 bits")
    attn_implementation: str | None = Field(None, min_length=1, description="transformers' attention kernel: "
                                                                            "eager, sdpa, flash_attention_2, ...; "
                                                                            "default: transformers' choice")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", v):
            raise ValueError("expected auto, cpu, cuda or cuda:N")
        return v

    def __str__(self) -> str:
        return model_label(self)


def _kind(value) -> str:
    if isinstance(value, HostedModel) or (isinstance(value, dict) and "backend" in value):
        return "hosted"
    return "local_options" if isinstance(value, (dict, LocalModel)) else "local"


# A mapping with `backend` is a hosted model, one without a local model's options, and anything else a
# local model's name; so a malformed mapping is reported by its own fields rather than as "not a
# string".
ModelSpec = Annotated[Union[Annotated[str, Tag("local")], Annotated[LocalModel, Tag("local_options")],
                            Annotated[HostedModel, Tag("hosted")]],
                      Discriminator(_kind)]
Model = Union[str, LocalModel, HostedModel]


def model_class(value: dict) -> type[LocalModel] | type[HostedModel]:
    """The model a mapping written in a task file describes (see ModelSpec)."""
    return HostedModel if _kind(value) == "hosted" else LocalModel


def local_options(model: str | LocalModel) -> LocalModel:
    return model if isinstance(model, LocalModel) else LocalModel(name=model)


def _changed(model: LocalModel) -> dict:
    """A local model's key fields that differ from their defaults."""
    return {k: v for k, v in model.model_dump(mode="json", exclude={"name"}).items()
            if v != LocalModel.model_fields[k].default}


def model_label(model: Model) -> str:
    """How tables, the store and the verdict name a model: its name, and a local model's revision,
    precision and quantisation when set (two arms may run one model at two precisions)."""
    if isinstance(model, str):
        return model
    if isinstance(model, HostedModel):
        return model.name
    name = model.name + (f"@{model.revision}" if model.revision else "")
    notes = ([f"{model.quantization.bits}-bit"] if model.quantization else []) + (
        [model.dtype] if model.dtype != "auto" else [])
    return name + (f" ({', '.join(notes)})" if notes else "")


def model_name(model: Model) -> str:
    """What the model is loaded by: an alias, folder or hub id (a hosted model's id on its server)."""
    return model if isinstance(model, str) else model.name


def model_key(model: Model) -> str | dict:
    """What identifies a model in a run's key: a local model's name, with the fields that change its
    results where they are not the defaults; a hosted model's answering fields."""
    if isinstance(model, str):
        return model
    if isinstance(model, LocalModel):
        changed = _changed(model)
        return {"name": model.name, **changed} if changed else model.name
    return model.model_dump(mode="json")


def load_backend(model: Model, base_dir: Path | None = None, where: str | None = None) -> Backend:
    """The backend that runs `model`, checked to work: a local model loaded, a hosted one asked once.
    `where` names the model's place in the task file for errors."""
    if not isinstance(model, HostedModel):
        from harness.backends.local import load_local

        return load_local(model, base_dir, where)
    from harness.backends.hosted import HostedBackend

    return HostedBackend(model, base_dir, where or f"model {model.name}")
