"""The transformers backend on a tiny model: batched, cached scoring must equal brute force."""

from __future__ import annotations

import pytest
import torch

from harness.errors import HarnessError
from harness.registry import load_backend

MESSAGES = [
    [{"role": "user", "content": "what is the capital of france ?"}],
    [{"role": "system", "content": "answer with one word"},
     {"role": "user", "content": "the team won the match and the star won one match . topic ?"}],
    [{"role": "user", "content": "phone"}],
]
CHOICES = ["sport", "business tech", "the capital city of italy"]


def brute_force(backend, ids: list[int], choice_ids: list[int]) -> float:
    """Log-probability of the continuation from one unpadded forward pass over prompt + continuation."""
    full = torch.tensor([ids + choice_ids])
    with torch.no_grad():
        logp = torch.log_softmax(backend.model(full).logits[0].float(), -1)
    return sum(logp[len(ids) - 1 + j, t].item() for j, t in enumerate(choice_ids))


@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_base_model_dir"])
def test_loglikelihood_matches_unbatched_forward(fixture, request):
    backend = load_backend(str(request.getfixturevalue(fixture)))
    prompts = [backend.render(m) for m in MESSAGES]
    # Prompts of different lengths in one batch: left padding must not move any score.
    assert len({p.n_tokens for p in prompts}) == len(prompts)
    scored = backend.loglikelihood(prompts, CHOICES)
    for prompt, s in zip(prompts, scored):
        assert s.prompt_tokens == prompt.n_tokens
        for choice, got in zip(CHOICES, s.logprobs):
            context, (answer,) = backend.split_answers(prompt, [choice])
            want = brute_force(backend, context, answer)
            assert got == pytest.approx(want, abs=1e-4)


def test_prompts_scored_again_are_not_run_again(tiny_model_dir):
    # A calibrated arm scores its uncalibrated twin's prompts: the scores come back with the time
    # they took, and the model does not run.
    backend = load_backend(str(tiny_model_dir))
    prompts = [backend.render(m) for m in MESSAGES]
    first = backend.loglikelihood(prompts, CHOICES)
    runs = []
    backend.model.register_forward_hook(lambda *args: runs.append(1))
    again = backend.loglikelihood(prompts, CHOICES)
    assert runs == [] and [s.logprobs for s in again] == [s.logprobs for s in first]
    assert all(s.latency_ms is None for s in first) and all(s.latency_ms > 0 for s in again)
    backend.loglikelihood(prompts, CHOICES[:2])  # other choices are another question
    assert runs


def test_chat_answers_end_with_end_of_turn(tiny_model_dir, tiny_base_model_dir):
    chat, base = load_backend(str(tiny_model_dir)), load_backend(str(tiny_base_model_dir))
    msgs = [{"role": "user", "content": "topic ?"}]
    assert chat.split_answers(chat.render(msgs), ["sport"])[1][0][-1] == chat.tokenizer.eos_token_id
    assert base.tokenizer.eos_token_id not in base.split_answers(base.render(msgs), ["sport"])[1][0]


def test_render_uses_chat_template_when_present(tiny_model_dir, tiny_base_model_dir):
    msgs = [{"role": "user", "content": "topic ?"}]
    assert load_backend(str(tiny_model_dir)).render(msgs).text.endswith("<|im_start|>assistant\n")
    assert load_backend(str(tiny_base_model_dir)).render(msgs).text.endswith("Answer:")


def test_generate_batched_equals_one_at_a_time(tiny_model_dir):
    backend = load_backend(str(tiny_model_dir))
    prompts = [backend.render(m) for m in MESSAGES]
    batched = backend.generate(prompts, max_new_tokens=6)
    for prompt, b in zip(prompts, batched):
        (single,) = backend.generate([prompt], max_new_tokens=6)
        assert (b.text, b.output_tokens, b.prompt_tokens) == (single.text, single.output_tokens, prompt.n_tokens)
        assert 1 <= b.output_tokens <= 6


# A fixed preamble and demonstrations: the prefix every query shares, then queries of many lengths.
PREAMBLE = [{"role": "system", "content": "answer with one word"},
            {"role": "user", "content": "the team won the match . topic ?"},
            {"role": "assistant", "content": "sport"},
            {"role": "user", "content": "the phone and the computer . topic ?"},
            {"role": "assistant", "content": "tech"}]
QUERIES = ["the star won one match", "the capital city of italy and the capital of france", "the team",
           "the computer won", "phone", "what is the capital of france and the match of the star and the phone",
           "tech tech", "match"]


@pytest.fixture(scope="module")
def varied_model_dir(tmp_path_factory):
    """A tiny model whose greedy outputs differ from prompt to prompt (a larger initialisation)."""
    from tests.conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("varied"), seed=3, initializer_range=0.5)


def prefix_prompts(backend):
    return [backend.render(PREAMBLE + [{"role": "user", "content": q + " . topic ?"}]) for q in QUERIES]


def test_shared_prefix_is_cached_and_scores_equal_the_uncached_forward(varied_model_dir):
    backend = load_backend(str(varied_model_dir))
    prompts = prefix_prompts(backend)
    # Two batches: the first sets up the prefix cache (its queries share more than the preamble by
    # chance: "the"), the second cuts it back and reuses it.
    scored = backend.loglikelihood(prompts[:4], CHOICES) + backend.loglikelihood(prompts[4:], CHOICES)
    preamble = len(backend.render(PREAMBLE).text)  # characters; the cached tokens cover at least it
    for prompt, s in zip(prompts, scored):
        assert s.prompt_tokens == prompt.n_tokens
        assert len(backend.tokenizer.decode(backend._ids([prompt.text])[0][:s.cached_tokens])) >= preamble - 30
        for choice, got in zip(CHOICES, s.logprobs):
            context, (answer,) = backend.split_answers(prompt, [choice])
            assert got == pytest.approx(brute_force(backend, context, answer), abs=1e-4)
    assert min(s.cached_tokens for s in scored) >= 20


# Choices that share their first tokens: each branch of the tree must see only its own.
BRANCHES = ["the capital", "the capital city of italy", "the", "sport"]


@pytest.mark.parametrize("fixture", ["varied_model_dir", "tiny_base_model_dir"])
def test_all_choices_are_scored_in_one_pass_equal_to_brute_force(fixture, request):
    backend = load_backend(str(request.getfixturevalue(fixture)))
    prompts = prefix_prompts(backend)
    backend.loglikelihood(prompts[:4], BRANCHES)  # keeps the preamble's cache (and "the", cut back below)
    runs = []
    backend.model.register_forward_hook(lambda *args: runs.append(1))
    scored = backend.loglikelihood(prompts[4:7], BRANCHES)
    # Prompts (past the kept prefix) and all their multi-token choices, in one forward pass.
    assert len(runs) == 1 and min(s.cached_tokens for s in scored) >= 20
    for prompt, s in zip(prompts[4:7], scored):
        for choice, got in zip(BRANCHES, s.logprobs):
            context, (answer,) = backend.split_answers(prompt, [choice])
            assert len(answer) > 1 or " " not in choice
            assert got == pytest.approx(brute_force(backend, context, answer), abs=1e-4)


def test_models_without_custom_masks_score_each_choice_on_its_own_cache_alike(varied_model_dir):
    # A sliding-window model, or one on flash attention, takes the path that repeats the cache per choice.
    backend = load_backend(str(varied_model_dir))
    prompts = prefix_prompts(backend)
    tree = backend._score(prompts, BRANCHES)
    per_choice = backend._score_per_choice(prompts, BRANCHES)
    for t, p in zip(tree, per_choice):
        assert t.logprobs == pytest.approx(p.logprobs, abs=1e-4)
        assert (t.prompt_tokens, t.cached_tokens) == (p.prompt_tokens, p.cached_tokens)


def test_shared_prefix_is_cached_and_generation_equals_the_uncached_path(varied_model_dir, monkeypatch):
    import harness.backends.local as local

    backend = load_backend(str(varied_model_dir))
    prompts = prefix_prompts(backend)
    cached = backend.generate(prompts[:4], max_new_tokens=6) + backend.generate(prompts[4:], max_new_tokens=6)
    monkeypatch.setattr(local, "MIN_PREFIX_TOKENS", 10**9)
    uncached = load_backend(str(varied_model_dir))
    for prompt, c in zip(prompts, cached):
        (alone,) = uncached.generate([prompt], max_new_tokens=6)
        assert alone.cached_tokens == 0 and c.cached_tokens >= 20
        assert (c.text, c.output_tokens, c.prompt_tokens) == (alone.text, alone.output_tokens, prompt.n_tokens)
    # The prompts differ enough for equal texts to mean something.
    assert len({c.text for c in cached}) >= 3


def test_truncate_counts_tokens(tiny_model_dir):
    backend = load_backend(str(tiny_model_dir))
    text = "the team won the match and the star won one match"
    short = backend.truncate(text, 4)
    assert len(backend.tokenizer(short, add_special_tokens=False)["input_ids"]) == 4
    assert backend.truncate(text, 100) == text


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(HarnessError, match="cannot be found"):
        load_backend("no-such-org/no-such-model-xyz")


def test_generation_ends_before_its_stop_string(varied_model_dir):
    """lm-evaluation-harness's `until`: a row stops at the first stop string, which its answer excludes,
    and no later token is generated for it."""
    backend = load_backend(str(varied_model_dir))
    prompts = prefix_prompts(backend)[:4]
    free = backend.generate(prompts, max_new_tokens=12)
    # A word of the first answer past its start: the answer must end just before it.
    words = free[0].text.split()
    assert len(words) >= 3, free[0].text
    stop = " " + words[2]
    stopped = backend.generate(prompts, max_new_tokens=12, stop=[stop])
    assert stopped[0].text == free[0].text[:free[0].text.find(stop)].strip()
    assert stopped[0].output_tokens < free[0].output_tokens
    for f, s in zip(free, stopped):
        assert s.text == (f.text[:f.text.find(stop)] if stop in f.text else f.text).strip()
