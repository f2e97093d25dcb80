"""Real HTTP servers for the hosted-backend tests (tests/test_hosted.py), all on 127.0.0.1:

- `serve_transformers`: `transformers serve`, a real OpenAI-compatible server, in its own process
  group, serving the built-in smollm2 under the id `smollm2-135m-instruct`;
- `FaultProxy`: an aiohttp server in front of another one that answers the next requests with
  scheduled faults (429, 500, a non-JSON 200, 401, a 400 quoting the key), checks the API key, and records every request
  body it receives with the answer it passed back;
- `serve_mlflow`: a real `mlflow server` (SQLite backend) for the tracking tests;
- `LogprobServer`: /v1/completions with vLLM's and llama.cpp's `echo` + `logprobs` semantics (and
  /v1/chat/completions) computed by a real transformers model, for the one kind of server no
  package installs offline.

No mocks: every request a test sends goes over a socket to one of these."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aiohttp import ClientSession, ClientTimeout, web

SERVED_MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- transformers serve ------------------------------------------------------------------------------

@dataclass
class Served:
    proc: subprocess.Popen
    url: str  # the server's root, e.g. http://127.0.0.1:8765
    log: Path

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def stop(self) -> None:
        """Ends the server's process group (it was started as its own session)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)


def serve_transformers(model_folder: Path, log: Path, startup_s: float = 180) -> Served:
    """`transformers serve` of the model folder, named by the folder's name (run from its parent, so
    the served id is exactly that name). Returns once GET /health answers."""
    import sys

    exe = Path(sys.executable).parent / "transformers"
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    with log.open("w") as out:
        proc = subprocess.Popen([str(exe), "serve", model_folder.name, "--host", "127.0.0.1", "--port", str(port),
                                 "--dtype", "float32"], cwd=model_folder.parent, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + startup_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{served.url}/health", timeout=2) as r:
                if r.status == 200:
                    return served
        except OSError:
            pass
        if time.monotonic() > deadline:
            served.stop()
            raise RuntimeError(f"transformers serve did not answer /health:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)


# --- mlflow server -------------------------------------------------------------------------------------

def serve_mlflow(folder: Path, log: Path, startup_s: float = 120) -> Served:
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend and its artifacts in `folder`, in its
    own process group. Returns once GET /health answers."""
    import sys

    exe = Path(sys.executable).parent / "mlflow"
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen([str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                                 "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                                 "--artifacts-destination", str(folder / "artifacts")],
                                cwd=folder, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + startup_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{served.url}/health", timeout=2) as r:
                if r.status == 200:
                    return served
        except OSError:
            pass
        if time.monotonic() > deadline:
            served.stop()
            raise RuntimeError(f"mlflow server did not answer /health:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)


# --- an aiohttp app in a background thread -----------------------------------------------------------

class BackgroundApp:
    """An aiohttp application served from a thread of this process, on a free loopback port."""

    def __init__(self):
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.loop = asyncio.new_event_loop()
        self.port: int | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def _on_start(self) -> None:
        pass

    async def _on_stop(self) -> None:
        pass

    def start(self):
        ready, failed = threading.Event(), []

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                self._runner = web.AppRunner(self.app, access_log=None)
                self.loop.run_until_complete(self._runner.setup())
                site = web.TCPSite(self._runner, "127.0.0.1", 0)
                self.loop.run_until_complete(site.start())
                self.port = self._runner.addresses[0][1]
                self.loop.run_until_complete(self._on_start())
            except BaseException as e:  # reported to the starting thread
                failed.append(e)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name=type(self).__name__)
        self._thread.start()
        ready.wait(30)
        if failed:
            raise failed[0]
        return self

    def stop(self) -> None:
        async def shutdown():
            await self._on_stop()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --- the fault-injecting proxy -----------------------------------------------------------------------

@dataclass
class Record:
    """One request the proxy received, and what it answered."""

    path: str
    body: Any  # the parsed JSON body (None when it was not JSON)
    headers: dict[str, str]
    fault: str | None = None  # the fault it was answered with, None when passed through
    status: int | None = None
    response: Any = None  # the upstream's parsed answer, when passed through

    @property
    def text(self) -> str:
        """Every prompt text of the body, joined: what a test matches an example's input against."""
        if not isinstance(self.body, dict):
            return ""
        if "messages" in self.body:
            return "\n".join(str(m.get("content")) for m in self.body["messages"])
        return str(self.body.get("prompt", ""))


FAULTS = ("429", "500", "garbage", "401", "400")


class FaultProxy(BackgroundApp):
    """Forwards /v1/... to `upstream`; `fail_next(...)` answers the next matching requests with
    faults instead, one per request, in order; `always` answers every request with one fault.
    `require_key`: requests without `Authorization: Bearer <key>` get 401 (so a test knows the key
    was really sent)."""

    def __init__(self, upstream: str, require_key: str | None = None):
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.require_key = require_key
        self.records: list[Record] = []
        self.always: str | None = None
        self._faults: deque[str] = deque()
        self._when: Callable[[Record], bool] | None = None
        self._lock = threading.Lock()
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _on_start(self) -> None:
        self._session = ClientSession(timeout=ClientTimeout(total=600))

    async def _on_stop(self) -> None:
        await self._session.close()

    def fail_next(self, *faults: str, when: Callable[[Record], bool] | None = None) -> None:
        assert all(f in FAULTS for f in faults), faults
        with self._lock:
            self._faults.extend(faults)
            self._when = when

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)

    def _fault_for(self, record: Record) -> str | None:
        with self._lock:
            self.records.append(record)
            if self.always:
                return self.always
            if self._faults and (self._when is None or self._when(record)):
                return self._faults.popleft()
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = Record(request.path, body, dict(request.headers))
        fault = self._fault_for(record)
        if self.require_key is not None and request.headers.get("Authorization") != f"Bearer {self.require_key}":
            fault = "401"
        record.fault = fault
        if fault == "401":
            # Like a real provider, the refusal quotes the key it was given: the harness must not.
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            record.status = 401
            return web.json_response({"error": {"message": f"Incorrect API key provided: {given}.",
                                                "type": "invalid_request_error", "code": "invalid_api_key"}},
                                     status=401)
        if fault == "400":
            # A server that quotes the request back in its error (some proxies and gateways do).
            record.status = 400
            quoted = f"{{'Authorization': '{request.headers.get('Authorization')}'}}"
            return web.json_response({"error": {"message": f"Invalid request with headers {quoted}",
                                                "type": "invalid_request_error"}}, status=400)
        if fault == "429":
            record.status = 429
            return web.json_response({"error": {"message": "Rate limit reached, slow down", "type": "requests"}},
                                     status=429, headers={"Retry-After": "0.05"})
        if fault == "500":
            record.status = 500
            return web.json_response({"error": {"message": "The server had an error while processing your request",
                                                "type": "server_error"}}, status=500)
        if fault == "garbage":
            record.status = 200
            return web.Response(status=200, text="<html><body>502 upstream says hello</body></html>",
                                content_type="text/html")
        async with self._session.request(request.method, self.upstream + request.path_qs, data=raw,
                                         headers={"Content-Type": request.headers.get("Content-Type",
                                                                                      "application/json")}) as up:
            data = await up.read()
            record.status = up.status
            try:
                record.response = json.loads(data)
            except ValueError:
                record.response = None
            return web.Response(status=up.status, body=data, content_type=up.content_type)


# --- a completions server with prompt log-probabilities, computed by a real model --------------------

class LogprobServer(BackgroundApp):
    """/v1/completions and /v1/chat/completions of a local transformers model (greedy), with the
    `echo` + `logprobs` semantics of vLLM and llama.cpp's OpenAI-compatible completions: with echo,
    `choices[0].text` is the prompt followed by the generated text, and `choices[0].logprobs` has one
    entry per token of both: `tokens`, `token_logprobs` (None for the first token, which has no
    context), `top_logprobs` and `text_offset` (each token's first character in `text`).

    The prompt is tokenized once, with offsets, as the server's tokenizer splits it (no special
    tokens added, as for this model's tokenizer), and scored in one forward pass.

    `echo=False`: a server that ignores `echo` and returns only the generated tokens' log-probabilities,
    their offsets counted from the prompt's start (as OpenAI's legacy completions API numbered them).

    Like a provider's prompt cache, usage reports as `prompt_tokens_details.cached_tokens` the
    longest prefix of a prompt's tokens that an earlier prompt began with."""

    def __init__(self, model_folder: Path, name: str, echo: bool = True):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__()
        self.name = name
        self.echo_supported = echo
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_folder)
        self.model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32).eval()
        self.requests: list[dict] = []
        self._prompts: list[list[int]] = []
        self.app.router.add_post("/v1/completions", self._completions)
        self.app.router.add_post("/v1/chat/completions", self._chat)

    def _logprobs(self, ids: list[int]):
        """Log-softmax over the vocabulary at every position of `ids` (one forward pass)."""
        torch = self.torch
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
        return torch.log_softmax(logits, -1)

    def _greedy(self, ids: list[int], max_tokens: int) -> list[tuple[int, float]]:
        out = []
        for _ in range(max_tokens):
            logp = self._logprobs(ids + [t for t, _ in out])[-1]
            token = int(logp.argmax())
            out.append((token, float(logp[token])))
            if token == self.tokenizer.eos_token_id:
                break
        return out

    def _usage(self, ids: list[int], generated: list) -> dict:
        cached = max((next((i for i, (a, b) in enumerate(zip(ids, seen)) if a != b), min(len(ids), len(seen)))
                      for seen in self._prompts), default=0)
        self._prompts.append(ids)
        return {"prompt_tokens": len(ids), "completion_tokens": len(generated),
                "total_tokens": len(ids) + len(generated), "prompt_tokens_details": {"cached_tokens": cached}}

    async def _received(self, request: web.Request) -> tuple[dict, web.Response | None]:
        """The request's body, recorded, and the refusal of a model this server does not serve."""
        body = await request.json()
        self.requests.append(body)
        if body.get("model") != self.name:
            return body, web.json_response({"error": {"message": f"model '{body.get('model')}' not found",
                                                      "type": "invalid_request_error"}}, status=404)
        return body, None

    async def _completions(self, request: web.Request) -> web.Response:
        body, refused = await self._received(request)
        if refused is not None:
            return refused
        prompt, echo = body["prompt"], bool(body.get("echo")) and self.echo_supported
        enc = self.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        generated = self._greedy(ids, int(body.get("max_tokens") or 16))
        gen_tokens = [self.tokenizer.decode([t]) for t, _ in generated]
        # Generated words follow the prompt separated by a space, as this word-level tokenizer
        # decodes them.
        gen_text = "".join(" " + t for t in gen_tokens)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "text": (prompt if echo else "") + gen_text}
        if body.get("logprobs") is not None:
            tokens, values, text_offset, top = [], [], [], []
            if echo:
                logp = self._logprobs(ids) if ids else None
                for i, (tid, (start, end)) in enumerate(zip(ids, offsets)):
                    tokens.append(prompt[start:end])
                    value = None if i == 0 else float(logp[i - 1, tid])
                    values.append(value)
                    top.append(None if i == 0 else {prompt[start:end]: value})
                    text_offset.append(start)
            position = len(prompt) if echo or not self.echo_supported else 0
            for (_, value), text in zip(generated, gen_tokens):
                tokens.append(text)
                values.append(value)
                top.append({text: value})
                text_offset.append(position + 1)
                position += 1 + len(text)
            choice["logprobs"] = {"tokens": tokens, "token_logprobs": values, "top_logprobs": top,
                                  "text_offset": text_offset}
        return web.json_response({
            "id": f"cmpl-{len(self.requests)}", "object": "text_completion", "created": int(time.time()),
            "model": self.name, "choices": [choice], "usage": self._usage(ids, generated)})

    async def _chat(self, request: web.Request) -> web.Response:
        body, refused = await self._received(request)
        if refused is not None:
            return refused
        ids = self.tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"]
        generated = self._greedy(ids, int(body.get("max_tokens") or 16))
        text = self.tokenizer.decode([t for t, _ in generated], skip_special_tokens=True)
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": self.name,
            "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": text}}],
            "usage": self._usage(ids, generated)})
