"""What LoRA's dropout costs a training step on CPU: the BBC task's first training batches, forward,
backward and optimizer step, for each dropout in turn (interleaved over --repeats), on the default
model. Prints the median seconds per step (each repeat's first step, a warm-up, left out).

    .venv/bin/python benchmarks/speed_lora_dropout.py [--dropouts 0.05 0.0] [--steps 3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
from pathlib import Path

import torch

from harness.data import load_data
from harness.measure import timer
from harness.registry import load_backend
from harness.task import load_task
from strategies.finetune import AnswerLogitsCollator, training_rows
from strategies.lora import Config, adapted

TASK = Path(__file__).parent / "tasks" / "bbc_news.yaml"


def step_times(task, data, backend, dropout: float, steps: int) -> list[float]:
    cfg = Config(dropout=dropout)
    train, _ = training_rows(task, data, backend, cfg, None, "lora")
    model = adapted(copy.deepcopy(backend.model), cfg, "lora")
    model.train()
    tokenizer = copy.deepcopy(backend.tokenizer)
    tokenizer.padding_side = "right"
    collate = AnswerLogitsCollator(tokenizer)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    times = []
    for i in range(steps + 1):
        batch = collate([{k: v for k, v in r.items() if k != "length"}
                         for r in train[i * cfg.batch_size:(i + 1) * cfg.batch_size]])
        with timer() as t:
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        times.append(t.s)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dropouts", type=float, nargs="+", default=[0.05, 0.0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    task = load_task(TASK)
    data = load_data(task)
    backend = load_backend(task.config.model, TASK.parent)
    times: dict[float, list[float]] = {d: [] for d in args.dropouts}
    for _ in range(args.repeats):
        for d in args.dropouts:
            times[d] += step_times(task, data, backend, d, args.steps)
    base = statistics.median(times[args.dropouts[0]])
    for d in args.dropouts:
        median = statistics.median(times[d])
        print(f"dropout {d:<5} median {median:.2f} s/step over {len(times[d])} steps ({median / base:.2f}x)")


if __name__ == "__main__":
    main()
