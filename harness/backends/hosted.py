"""The hosted backend: a model behind an OpenAI-compatible HTTP API (a provider, vLLM, TGI, llama.cpp,
`transformers serve`), through the `openai` client.

- Generation: chat completions for a chat prompt (the server applies the model's chat template),
  completions for a raw one. Greedy (temperature 0).
- Log-likelihood, only with `logprobs: true`: lm-evaluation-harness's `local-completions` request,
  completions of prompt + answer with `echo` and `logprobs`, summing the log-probabilities of the
  tokens at or after the answer's first character. A server that returns none is an error, never
  a score of zero (llama.cpp issue #27174: lm-eval reported chance accuracy that way).
- Reliability: up to `max_concurrency` requests at once; the client retries 408, 409, 429 and 5xx
  with exponential backoff (honouring Retry-After) up to `max_retries` times. Each response is
  written to the store's response cache as it arrives, keyed by the full request, so a rerun, a
  resume after an interruption, or another arm sending the same request sends nothing again.
- Measurement: each example's latency is its own request's (its requests', summed, when it took
  several); tokens are the server's `usage` where it reports them.

The API key is read from the environment variable the task names, handed to the client and
nowhere else: errors are written here, without the server's text when it is about the key."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from harness.backends.base import Generation, Prompt, Scored, until_stop
from harness.config import DEFAULT_BATCH_SIZE, HostedModel
from harness.errors import HarnessError

# Without a local tokenizer, prompt lengths are estimated at this many characters per token
# (English text under common BPE vocabularies); the measured tokens come from the server's usage.
CHARS_PER_TOKEN = 4


def _text(endpoint: str, response: dict):
    """The answer's text in a chat or completions response."""
    choice = response["choices"][0]
    return choice["message"]["content"] if endpoint == "chat" else choice["text"]


def _cached(usage: dict) -> int:
    """Prompt tokens the server says it served from its prompt cache (OpenAI's usage field; 0 when a
    server does not report it)."""
    return (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0


class HostedBackend:
    """A hosted model that generates (a `Remote` backend); `HostedScorer` also scores."""

    n_params = None

    def __init__(self, spec: HostedModel, base_dir: Path | None, where: str):
        try:
            import openai
        except ImportError:
            raise HarnessError(f"{where}.backend", "a hosted model needs the openai client, which is not installed "
                                                   "(pip install 'ft-harness[hosted]')") from None

        self.spec, self.where, self.name = spec, where, spec.name
        self.context_length = spec.context_length
        self._key = "no-key"  # the client insists on one; a local server ignores it
        if spec.api_key_env:
            self._key = os.environ.get(spec.api_key_env, "")
            if not self._key:
                raise HarnessError(f"{where}.api_key_env", f"the environment variable {spec.api_key_env} is not set "
                                                           f"(it should hold the API key)")
        self._client = openai.OpenAI(base_url=spec.base_url, api_key=self._key, max_retries=spec.max_retries,
                                     timeout=spec.timeout_s)
        self._tokenizer = None
        if spec.tokenizer:
            from transformers import AutoTokenizer

            from harness.backends.local import resolve_model

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(resolve_model(spec.tokenizer, base_dir))
            except (OSError, ValueError) as e:
                raise HarnessError(f"{where}.tokenizer", f"cannot be loaded: {str(e).splitlines()[0]}") from None
        self.cache = None  # the store, once it is open (use_cache)
        self.on_status = None  # called with the requests in flight, sent, retried and cached
        self.sent = self.retries = self.cached = 0
        self._check()

    # --- the prompt side --------------------------------------------------------------------------

    def auto_batch_size(self, prompts, labels, max_new_tokens) -> int:
        """`limits.batch_size: auto`: the server holds the memory, and requests run max_concurrency at
        once whatever the batch; a batch only groups them, so the default serves."""
        return DEFAULT_BATCH_SIZE

    def render(self, messages):
        # The server applies the chat template; the text is what the store shows of the prompt.
        text = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
        return Prompt(text, self.count_tokens([text])[0], messages=messages)

    def count_tokens(self, texts):
        if self._tokenizer is not None:
            return [len(ids) for ids in self._tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        return [math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts]

    def truncate(self, text, max_tokens):
        if self._tokenizer is None:
            return text[:max_tokens * CHARS_PER_TOKEN]
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= max_tokens else self._tokenizer.decode(ids[:max_tokens])

    # --- requests ---------------------------------------------------------------------------------

    def use_cache(self, store) -> None:
        self.cache = store

    def _request(self, prompt: Prompt, max_tokens: int, schema: dict | None = None,
                 stop: Sequence[str] = ()) -> tuple[str, dict]:
        # Only when set: a request without stop sequences keeps its cache key from before they existed.
        until = {"stop": list(stop)} if stop else {}
        if prompt.messages is not None:
            body = {"model": self.name, "messages": prompt.messages, "max_tokens": max_tokens, "temperature": 0,
                    **until}
            if schema is not None:
                # OpenAI's structured outputs, which vLLM and llama.cpp's server accept too.
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": "answer", "schema": schema, "strict": True}}
            return "chat", body
        if schema is not None:
            # The completions endpoint has no response_format: the schema would be silently ignored.
            raise self._fail("", "decoding under a JSON schema needs chat completions; give this arm prompt: "
                                 "{format: chat}")
        return "completions", {"model": self.name, "prompt": prompt.text, "max_tokens": max_tokens,
                               "temperature": 0, **until}

    def _cache_key(self, endpoint: str, body: dict) -> str:
        request = {"base_url": self.spec.base_url.rstrip("/"), "endpoint": endpoint, "body": body}
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()

    def _fail(self, field: str, message: str) -> HarnessError:
        where = f"{self.where}.{field}" if field else self.where
        return HarnessError(where, message.replace(self._key, "***") if len(self._key) > 3 else message)

    def _send(self, endpoint: str, body: dict) -> tuple[dict, float, int]:
        """One request, retried by the client: (the response, its latency in ms, retries taken)."""
        import openai

        create = (self._client.chat.completions if endpoint == "chat" else self._client.completions).with_raw_response
        try:
            raw = create.create(**body)
        except openai.AuthenticationError as e:
            raise self._fail("api_key_env", f"the server refused the API key (HTTP {e.status_code})") from None
        except openai.PermissionDeniedError as e:
            raise self._fail("api_key_env", f"the API key may not use this model (HTTP {e.status_code})") from None
        except openai.NotFoundError:
            raise self._fail("name", f"{self.spec.base_url} has no model '{self.name}' or no /{endpoint} "
                                     f"endpoint (HTTP 404)") from None
        except openai.APIStatusError as e:
            retried = f" after {self.spec.max_retries} retries" if e.status_code in (408, 409, 429) or \
                e.status_code >= 500 else ""
            raise self._fail("", f"the server answered HTTP {e.status_code}{retried}: "
                                 f"{str(e.message).splitlines()[0][:300]}") from None
        except openai.APITimeoutError:
            raise self._fail("timeout_s", f"no answer from {self.spec.base_url} within {self.spec.timeout_s:g} s, "
                                          f"{self.spec.max_retries} retries included") from None
        except openai.APIConnectionError as e:
            raise self._fail("base_url", f"cannot reach {self.spec.base_url}: {e.__cause__ or e}") from None
        try:
            data = json.loads(raw.text)
            if not isinstance(_text(endpoint, data), str):
                raise TypeError(data)
        except (ValueError, KeyError, IndexError, TypeError):
            raise self._fail("base_url", f"the answer to /{endpoint} is not an OpenAI-compatible response "
                                         f"(it begins {raw.text[:120]!r})") from None
        return data, raw.elapsed.total_seconds() * 1000, raw.retries_taken

    def _run(self, requests: list[tuple[str, dict]]) -> list[dict]:
        """Every request's {"response", "latency_ms"}, from the cache or sent, `max_concurrency` at a
        time; each answer is cached as soon as it arrives, so an interruption loses only those in
        flight."""
        keys = [self._cache_key(*r) for r in requests]
        results = self.cache.responses(keys) if self.cache is not None else {}
        self.cached += sum(k in results for k in keys)
        todo = {k: r for k, r in zip(keys, requests) if k not in results}
        pool = ThreadPoolExecutor(self.spec.max_concurrency)
        futures = {}
        try:
            futures = {pool.submit(self._send, *request): key for key, request in todo.items()}
            pending = set(futures)
            self.sent += len(futures)
            while pending:
                self._status(len(pending))
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    self._keep(future.result(), futures[future], results)
            self._status(0)
        finally:
            # An error or Ctrl-C: the requests not yet sent are dropped, those in flight finish. Their
            # answers, and those that arrived with the failed one, are kept too: they were waited for,
            # and a rerun would otherwise pay for them again.
            pool.shutdown(wait=True, cancel_futures=True)
            for future, key in futures.items():
                if key not in results and future.done() and not future.cancelled() and future.exception() is None:
                    self._keep(future.result(), key, results)
        return [results[k] for k in keys]

    def _keep(self, sent: tuple[dict, float, int], key: str, results: dict) -> None:
        data, latency_ms, retries = sent
        self.retries += retries
        results[key] = entry = {"response": data, "latency_ms": latency_ms}
        if self.cache is not None:
            self.cache.add_response(key, entry)

    def _status(self, in_flight: int) -> None:
        if self.on_status is not None:
            self.on_status(in_flight=in_flight, sent=self.sent, retries=self.retries, cached=self.cached)

    def _check(self) -> None:
        """One small request of each kind the backend will send, before anything is stored: an
        unreachable server, a refused key, an unknown model, a malformed answer or missing
        log-probabilities fail here, in one line."""
        self._send(*self._request(Prompt("Say OK.", 3, messages=[{"role": "user", "content": "Say OK."}]), 1))

    # --- what the runner calls ----------------------------------------------------------------------

    def generate(self, prompts, max_new_tokens, schema=None, stop=()):
        out = []
        requests = [self._request(p, max_new_tokens, schema, stop) for p in prompts]
        for prompt, (endpoint, _), answer in zip(prompts, requests, self._run(requests)):
            # A server may return the stop string, or ignore the parameter: cut as the local path does.
            text, usage = until_stop(_text(endpoint, answer["response"]), stop), answer["response"].get("usage") or {}
            out.append(Generation(text.strip(), usage.get("prompt_tokens") or prompt.n_tokens,
                                  usage.get("completion_tokens") or self.count_tokens([text])[0],
                                  answer["latency_ms"], _cached(usage)))
        return out


class HostedScorer(HostedBackend):
    """A hosted model whose server returns prompt log-probabilities (`logprobs: true`): it scores
    labels as well (a `Scorer`)."""

    def _check(self) -> None:
        super()._check()
        # Shaped like a raw prompt's scoring request ("The sky is" + " " + "blue"): without the
        # delimiter, "isblue" may be one token that starts before the answer.
        self.loglikelihood([Prompt("The sky is", 3, answer_prefix=" ", end_of_turn=False)], ["blue"])

    def _scoring_request(self, prompt: Prompt, choice: str) -> tuple[str, dict]:
        if prompt.messages is not None:
            raise self._fail("logprobs", "log-likelihoods over HTTP need prompt.format: raw (the completions "
                                         "endpoint applies no chat template); or set logprobs: false to classify "
                                         "by generating")
        text = prompt.text + prompt.answer_prefix + choice
        return "completions", {"model": self.name, "prompt": text, "max_tokens": 1, "temperature": 0,
                               "echo": True, "logprobs": 1}

    def _continuation_logprob(self, response: dict, start: int, end: int) -> float:
        """The summed log-probability of the echoed tokens starting in [start, end): the answer."""
        logprobs = response["choices"][0].get("logprobs") or {}
        offsets, values = logprobs.get("text_offset") or [], logprobs.get("token_logprobs") or []
        answer = [v for o, v in zip(offsets, values) if start <= o < end]
        # The answer's own tokens must be there, each with a value. A server that ignores `echo`
        # still returns the generated token's log-probability, placed after the answer: summing the
        # answer's tokens (none) would score every label 0.0 and pick the first, at chance accuracy.
        if not answer or None in answer or len(offsets) != len(values):
            raise self._fail("logprobs", "the server returned no log-probabilities for the prompt (asked on "
                                         "/completions with echo: true, logprobs: 1), so labels cannot be "
                                         "scored; set logprobs: false for this model to classify by generating")
        return float(sum(answer))

    def loglikelihood(self, prompts, choices):
        answers = self._run([self._scoring_request(p, c) for p in prompts for c in choices])
        out = []
        for i, prompt in enumerate(prompts):
            mine = answers[i * len(choices):(i + 1) * len(choices)]
            start = len(prompt.text)
            scores = [self._continuation_logprob(a["response"], start, start + len(prompt.answer_prefix + c))
                      for a, c in zip(mine, choices)]
            usages = [a["response"].get("usage") or {} for a in mine]
            out.append(Scored(scores, sum(u.get("prompt_tokens") or prompt.n_tokens for u in usages),
                              sum(a["latency_ms"] for a in mine), sum(map(_cached, usages))))
        return out
