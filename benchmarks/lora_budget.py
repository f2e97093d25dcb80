"""The default task's LoRA training budget, chosen from a learning curve: accuracy against
optimizer steps, each point a full training run from scratch (its own learning-rate schedule), with
its training wall time.

    .venv/bin/python benchmarks/lora_budget.py [--task benchmarks/tasks/bbc_news.yaml]
        [--steps 10 20 30 40 60] [--store PATH]

The task's own `lora` arm is run with `max_steps` set to each value and everything else as the
task has it. --store keeps the runs (a rerun reuses them); by default a temporary store.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml

from harness.compare import compare
from harness.store import Store


def curve_task(task: Path, steps: list[int], folder: Path) -> Path:
    """The task with only its lora arm and a learning curve over max_steps, written into `folder`
    (data paths made absolute)."""
    raw = yaml.safe_load(task.read_text(encoding="utf-8"))
    for split in ("train", "validation", "eval"):
        if raw["data"].get(split):
            raw["data"][split] = str((task.parent / raw["data"][split]).resolve())
    raw["strategies"] = {"lora": raw["strategies"]["lora"]}
    raw["learning_curves"] = [{"strategy": "lora", "param": "max_steps", "values": steps}]
    out = folder / task.name
    out.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=Path, default=Path(__file__).parent / "tasks" / "bbc_news.yaml")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 30, 40, 60])
    parser.add_argument("--store", type=Path, help="results store (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        task = curve_task(args.task, args.steps, Path(tmp))
        store_path = args.store or Path(tmp) / "budget.sqlite"
        report = compare(task, strategies=["lora"], store_path=store_path, progress=False)
        store = Store(store_path, readonly=True)
        try:
            summaries = {p.run_id: store.run(p.run_id)["summary"] for c in report.learning_curves for p in c.points}
        finally:
            store.close()
    [curve] = report.learning_curves
    print(f"{args.task.name}: lora, {report.n_examples} eval examples, accuracy by training steps")
    print(f"{'steps':>6} {'epochs':>7} {'accuracy % [95% CI]':>22} {'best val loss':>14} {'train s':>8} "
          f"{'tokens/s':>9}")
    for point in curve.points:
        t, q = summaries[point.run_id]["training"], point.quality
        print(f"{point.value:>6} {t['epochs']:>7.2f} {100 * q.value:>8.1f} "
              f"[{100 * q.ci_low:.1f}, {100 * q.ci_high:.1f}]"
              f"{'':>1} {t['best_eval_loss'] or float('nan'):>14.3f} {t['wall_s']:>8.0f} {t['tokens_per_s']:>9.0f}")


if __name__ == "__main__":
    main()
