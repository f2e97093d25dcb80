"""LoRA training speed on the default model: tokens/s, model-FLOPs utilisation against this
machine's fp32 GEMM peak (measured in the same run), and a plain peft + Trainer script on the
same data and settings for comparison.

    .venv/bin/python benchmarks/speed_lora.py [--steps 12] [--repeats 3]

MFU counts 4 x params FLOPs per trained token (forward 2N, backward through the frozen base 2N;
see harness/measure.py) and, for comparison with full fine-tuning figures, 6 x params.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from harness.measure import timer, training_flops

TASK = Path(__file__).parent / "tasks" / "bbc_news.yaml"


def gemm_peak_gflops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        with timer() as t:
            a @ b
        times.append(t.s)
    return 2 * n**3 / min(times) / 1e9


def ours(task, data, backend, params, steps: int) -> tuple[float, int]:
    from harness.arm import build
    from harness.armspec import parse_arm

    run = params.model_copy(update={"max_steps": steps, "eval_steps": steps + 1})
    arm = build(parse_arm("lora", run.model_dump(), task.config, "strategies"), task)
    with tempfile.TemporaryDirectory() as tmp:
        t = arm.train(data, backend, Path(tmp), progress=False)
    return t.tokens_seen / t.wall_s, t.tokens_seen


def plain(task, data, backend, params, steps: int) -> tuple[float, int]:
    """What a practitioner writes from the peft and transformers docs: the same chat prompts,
    labels masked on the prompt, default Trainer sampling and settings."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from harness.backends.local import resolve_model
    from harness.prompting import build_messages

    path = resolve_model(task.config.model)
    tok = backend.tokenizer
    rows = []
    for ex in data.train:
        prompt = tok.apply_chat_template(build_messages(task, ex, backend), add_generation_prompt=True, tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tok(ex.target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append({"input_ids": p_ids + a_ids, "labels": [-100] * len(p_ids) + a_ids})
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
                           LoraConfig(task_type="CAUSAL_LM", r=params.r, lora_alpha=params.alpha,
                                      lora_dropout=params.dropout, target_modules="all-linear"))
    tok.padding_side = "right"
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=params.batch_size, max_steps=steps,
                                 learning_rate=params.learning_rate, report_to="none", use_cpu=True,
                                 save_strategy="no", disable_tqdm=True, include_num_input_tokens_seen="non_padding")
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                          data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
        with timer() as wall:
            trainer.train()
    tok.padding_side = "left"
    return trainer.state.num_input_tokens_seen / wall.s, trainer.state.num_input_tokens_seen


def main() -> None:
    from harness.data import load_data
    from harness.registry import load_backend
    from harness.task import load_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    task = load_task(TASK)
    data = load_data(task)
    backend = load_backend(task.config.model)
    params = task.arms["lora"].weights.config
    n = backend.n_params
    peak, tok_ours, tok_plain = [], [], []
    for _ in range(args.repeats):  # interleaved, so load drift hits both arms alike
        peak.append(gemm_peak_gflops())
        tok_ours.append(ours(task, data, backend, params, args.steps)[0])
        tok_plain.append(plain(task, data, backend, params, args.steps)[0])
    peak_g, ours_t, plain_t = (statistics.median(x) for x in (peak, tok_ours, tok_plain))
    print(f"model {task.config.model}: {n / 1e6:.1f} M params, batch {params.batch_size}, {args.steps} steps, "
          f"{args.repeats} repeats, medians")
    print(f"fp32 GEMM peak (2048^3 matmul): {peak_g:.0f} GFLOP/s")
    for name, t in (("harness lora", ours_t), ("plain peft + Trainer", plain_t)):
        print(f"{name:>22}: {t:6.0f} tokens/s  MFU {training_flops(n, t, 'lora') / 1e9 / peak_g:5.1%} (4N/token)"
              f"  {training_flops(n, t, 'full') / 1e9 / peak_g:5.1%} (6N/token)")
    print(f"ratio harness / plain: {ours_t / plain_t:.2f}")


if __name__ == "__main__":
    main()
