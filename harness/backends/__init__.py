"""Backends: where a model runs, behind the one interface strategies and the runner talk to
(base.py: the `Backend` Protocol and its capabilities, `Scorer`, `HasWeights`, `Remote`).

`local` runs a transformers model in this process and has every capability. `hosted` talks to an
OpenAI-compatible server (a provider, vLLM, TGI, llama.cpp, `transformers serve`); it scores only
when the task says the server returns prompt log-probabilities (`logprobs: true`).

A task's `model:` is a string (a local model with the default options), a `LocalModel` mapping (the
same with its precision, device and quantisation chosen) or a `HostedModel` mapping (`backend:
openai`), all in harness/config.py; `harness.registry.load_backend` loads the backend that runs it.
Nothing here is imported by reading a task file: it never loads torch or an HTTP client."""
