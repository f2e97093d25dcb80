"""What a backend is, and what only some backends can do, as Protocols: code that needs a capability
asks `isinstance(backend, Scorer)`, never whether an attribute happens to exist.

- `Backend`: every backend renders chat turns into a prompt, counts and cuts tokens, knows its context
  length and generates;
- `Scorer`: also gives the log-likelihood of continuations (rank classification, calibration);
- `HasWeights`: weights in this process, to fine-tune, load checkpoints onto and measure forgetting
  on;
- `Remote`: answers over the network, kept in the store's response cache, its requests reported as
  they go.

Plain types and Protocols only: this module imports the standard library alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


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


def until_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the first of the stop strings (lm-evaluation-harness's until), which it excludes."""
    ends = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[:min(ends)] if ends else text


class Backend(Protocol):
    name: str
    n_params: int | None  # None when the server does not tell it

    @property
    def context_length(self) -> int: ...
    def render(self, messages: list[dict[str, str]]) -> Prompt: ...
    def truncate(self, text: str, max_tokens: int) -> str: ...
    def count_tokens(self, texts: list[str]) -> list[int]: ...
    # `schema`: a JSON Schema every answer must follow (constrained decoding); None: free text.
    # `stop`: an answer ends before the first of these strings, which it does not include.
    def generate(self, prompts: list[Prompt], max_new_tokens: int, schema: dict | None = None,
                 stop: Sequence[str] = ()) -> list[Generation]: ...
    # `limits.batch_size: auto`: the batch size to run with, given the n longest prompts `prompts(n)`
    # and what is asked of them (the labels scored, or else max_new_tokens generated).
    def auto_batch_size(self, prompts: Callable[[int], list[Prompt]], labels: list[str] | None,
                        max_new_tokens: int) -> int: ...


@runtime_checkable
class Scorer(Backend, Protocol):
    def loglikelihood(self, prompts: list[Prompt], choices: list[str]) -> list[Scored]: ...


@runtime_checkable
class HasWeights(Backend, Protocol):
    model: Any  # a transformers causal LM
    tokenizer: Any  # its tokenizer
    device: Any  # the torch device the model is on
    quantized: bool  # loaded in 4 or 8 bits (bitsandbytes): its weights cannot be trained, only adapted

    def split_answers(self, prompt: Prompt, answers: list[str]) -> tuple[list[int], list[list[int]]]:
        """The prompt's token ids and each answer's, as scored and trained on."""
        ...

    def text_nll(self, texts: list[str], max_tokens: int) -> list[tuple[float, int]]:
        """Per text, its summed negative log-likelihood and the number of its predicted tokens."""
        ...


@runtime_checkable
class Remote(Backend, Protocol):
    # Called with the requests in flight, sent, retried and cached (a progress bar's postfix).
    on_status: Callable[..., None] | None

    def use_cache(self, store: Any) -> None:
        """Keep every answer in `store` (a harness.store.Store), and read answers already there."""
        ...
