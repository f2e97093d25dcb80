"""Prompt formats and calibration: raw prompts are lm-evaluation-harness's text and token
alignment, and contextual calibration removes a label bias planted in a tiny model."""

from __future__ import annotations

import pytest
import torch

from harness import prompting
from harness.arm import build
from harness.backends.base import Prompt
from harness.data import load_data
from harness.prompting import build_messages, render
from harness.registry import load_backend
from harness.runner import calibration, run_strategy
from harness.task import load_task
from tests.conftest import build_tiny_model

RAW = {"format": "raw", "system": "answer with one word", "template": "article : {{ text }} topic ?"}


def one_pass(backend, ids: list[int], continuation: list[int]) -> float:
    with torch.no_grad():
        logp = torch.log_softmax(backend.model(torch.tensor([ids + continuation])).logits[0].float(), -1)
    return sum(logp[len(ids) - 1 + j, t].item() for j, t in enumerate(continuation))


def test_raw_prompt_is_lm_eval_text(make_task, tiny_model_dir):
    task = load_task(make_task(prompt={**RAW, "target_delimiter": " = "}))
    data, backend = load_data(task), load_backend(str(tiny_model_dir))
    demos, query = data.train[:2], data.eval[0]
    prompt = render(task, backend, build_messages(task, query, backend, demos=demos))
    shots = [f"article : {d.input} topic ? = {d.target}" for d in demos] + [f"article : {query.input} topic ?"]
    assert prompt.text == "answer with one word\n\n" + "\n\n".join(shots)
    assert (prompt.answer_prefix, prompt.end_of_turn) == (" = ", False)
    assert prompt.n_tokens == backend.count_tokens([prompt.text])[0]


def test_raw_answer_follows_the_prompt_without_end_of_turn(tiny_model_dir):
    backend = load_backend(str(tiny_model_dir))
    ids = backend.tokenizer.convert_tokens_to_ids
    spaced = backend.split_answers(Prompt("topic ?", 2, answer_prefix=" ", end_of_turn=False), ["sport", "business"])
    # Whitespace ending the prompt moves to the answer, as lm-evaluation-harness does.
    trailing = backend.split_answers(Prompt("topic ? ", 2, answer_prefix="", end_of_turn=False), ["sport", "business"])
    assert spaced == trailing == (ids(["topic", "?"]), [ids(["sport"]), ids(["business"])])
    chat = backend.split_answers(Prompt("topic ?", 2), ["sport"])
    assert chat == (ids(["topic", "?"]), [ids(["sport", "<|im_end|>"])])


def test_raw_scores_equal_one_pass_over_prompt_and_answer(make_task, tiny_model_dir):
    task = load_task(make_task(prompt=RAW))
    data, backend = load_data(task), load_backend(str(tiny_model_dir))
    prompts = [render(task, backend, build_messages(task, ex, backend, demos=data.train[:i]))
               for i, ex in enumerate(data.eval[:3])]
    labels = task.config.labels
    for prompt, scored in zip(prompts, backend.loglikelihood(prompts, labels)):
        for label, got in zip(labels, scored.logprobs):
            joint = backend.tokenizer(prompt.text + " " + label, add_special_tokens=False)["input_ids"]
            assert got == pytest.approx(one_pass(backend, joint[:prompt.n_tokens], joint[prompt.n_tokens:]), abs=1e-4)


@pytest.mark.integration
def test_raw_alignment_on_the_default_tokenizer():
    """SmolLM2's BPE has a token for " business" (space included): the raw answer must be scored as
    that one token, not as a space and then "business", and not as the bare word."""
    backend = load_backend("smollm2-135m-instruct")
    encode = lambda text: backend.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    context, (answer,) = backend.split_answers(Prompt("Article: Shares rose.\nTopic:", 0, " ", False), ["business"])
    assert context == encode("Article: Shares rose.\nTopic:")
    assert answer == encode(" business") and len(answer) == 1 and answer != encode("business")
    trailing = Prompt("Article: Shares rose.\nTopic: ", 0, "", False)
    assert backend.split_answers(trailing, ["business"]) == (context, [answer])


class PlantedBias:
    """Adds `strength` to one token's logit at every position: a model that prefers that label
    whatever the input."""

    def __init__(self, backend, token: str, strength: float):
        self.token, self.strength = backend.tokenizer.convert_tokens_to_ids(token), strength
        self.handle = backend.model.lm_head.register_forward_hook(self)

    def __call__(self, module, inputs, logits):
        logits = logits.clone()
        logits[..., self.token] += self.strength
        return logits


def predictions(task, arm_name, backend, data, bias=None):
    strategy = build(task.arms[arm_name], task)
    arm_task = task.for_arm(task.arms[arm_name])
    strategy.prepare(data, backend)
    if bias is None and arm_task.config.prompt.calibrate:
        bias = calibration(arm_task, strategy, backend, data.eval[0])
    results = []
    run_strategy(arm_task, strategy, backend, data.eval, on_batch=results.extend, bias=bias)
    return {r.example_id: r.prediction for r in results}, bias


@pytest.fixture(scope="module")
def sharp_model(tmp_path_factory):
    # Weights large enough for the input to move the label scores (see build_tiny_model).
    return build_tiny_model(tmp_path_factory.mktemp("sharp") / "model", initializer_range=0.2)


@pytest.mark.parametrize("prompt_format", ["raw", "chat"])
def test_calibration_removes_a_planted_label_bias(make_task, sharp_model, prompt_format, monkeypatch):
    task = load_task(make_task(model=str(sharp_model), prompt={**RAW, "format": prompt_format},
                               strategies={"zero_shot": {}, "calibrated": {"prompt": {"calibrate": True}}}))
    data, backend = load_data(task), load_backend(str(sharp_model))
    planted = PlantedBias(backend, "sport", 8.0)
    plain, _ = predictions(task, "zero_shot", backend, data)
    calibrated, bias = predictions(task, "calibrated", backend, data)
    assert set(plain.values()) == {"sport"}  # the bias decides every answer
    assert bias["sport"] > 0.9  # seen on content-free inputs alone
    assert set(calibrated.values()) - {"sport"}
    if prompt_format == "raw":
        assert len(set(calibrated.values())) >= 2
        # One content-free input, one-token labels and no end-of-turn token: the planted shift of one
        # label's log-probability cancels exactly (averaging several inputs' probabilities, as Zhao et
        # al. do, cancels it only approximately).
        monkeypatch.setattr(prompting, "CONTENT_FREE", ("N/A",))
        planted_once, _ = predictions(task, "calibrated", backend, data)
        planted.handle.remove()
        unbiased_once, _ = predictions(task, "calibrated", backend, data)
        assert planted_once == unbiased_once


def test_calibration_uses_no_eval_label(make_task, tiny_model_dir):
    task = load_task(make_task(strategies={"calibrated": {"prompt": {"calibrate": True}}}))
    data, backend = load_data(task), load_backend(str(tiny_model_dir))
    strategy, arm_task = build(task.arms["calibrated"], task), task.for_arm(task.arms["calibrated"])
    strategy.prepare(data, backend)
    sport, tech = (next(ex for ex in data.eval if ex.target == label) for label in ("sport", "tech"))
    assert calibration(arm_task, strategy, backend, sport) == calibration(arm_task, strategy, backend, tech)
