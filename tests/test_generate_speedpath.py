"""Greedy generation with rows leaving the batch as they end: the same answers as transformers'
`generate` on a left-padded batch, fewer rows computed after the first ends."""

from __future__ import annotations

import pytest
import torch

from harness.backends.base import until_stop
from harness.registry import load_backend
from tests.test_models import prefix_prompts


@pytest.fixture(scope="module")
def varied_model_dir(tmp_path_factory):
    from tests.conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("varied"), seed=3, initializer_range=0.5)


def plain_generate(backend, prompts, max_new_tokens):
    """transformers' generate as its documentation shows it, decoded as the harness decodes."""
    tok = backend.tokenizer
    enc = tok([p.text for p in prompts], add_special_tokens=False, padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = backend.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
    return [tok.decode(row, skip_special_tokens=True) for row in out[:, enc["input_ids"].shape[1]:]]


def batch_sizes(backend) -> list[int]:
    """The batch dimension of every forward pass from now on."""
    sizes = []
    backend.model.register_forward_hook(lambda module, args, kwargs, out: sizes.append(len(kwargs["input_ids"])),
                                        with_kwargs=True)
    return sizes


def test_rows_leave_the_batch_at_their_end_token_and_answers_equal_generate(varied_model_dir):
    backend = load_backend(str(varied_model_dir))
    prompts = prefix_prompts(backend)
    free = plain_generate(backend, prompts, 10)
    # A word the answers often produce ends them too, so rows end at different steps.
    words = [w for text in free for w in text.split()[1:]]
    ender = max(set(words), key=words.count)
    backend.model.generation_config.eos_token_id = [backend.tokenizer.eos_token_id,
                                                    backend.tokenizer.convert_tokens_to_ids(ender)]
    expected = plain_generate(backend, prompts, 10)
    sizes = batch_sizes(backend)
    got = backend.generate(prompts, max_new_tokens=10)
    assert [g.text for g in got] == [e.strip() for e in expected]
    ended = [g for g in got if g.output_tokens < 10]
    assert ended and len(ended) < len(got)
    # One pass per new token, after the prefix's: each as wide as the rows still answering.
    steps = sizes[-max(g.output_tokens for g in got):]
    assert steps[0] == len(prompts) and steps[-1] < len(prompts)
    assert steps == [sum(g.output_tokens > k for g in got) for k in range(len(steps))]


def test_a_row_at_its_stop_string_leaves_the_batch(varied_model_dir):
    backend = load_backend(str(varied_model_dir))
    prompts = prefix_prompts(backend)[:4]
    free = plain_generate(backend, prompts, 12)
    stop = " " + free[0].split()[2]
    sizes = batch_sizes(backend)
    got = backend.generate(prompts, max_new_tokens=12, stop=[stop])
    assert [g.text for g in got] == [until_stop(f, [stop]).strip() for f in free]
    assert got[0].output_tokens < 12 and sizes[-1] < len(prompts)
