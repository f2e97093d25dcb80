"""bfloat16 against float32: on how many BBC News articles do the two precisions predict the same
topic? The task's zero-shot arm is run twice through `harness compare`, once per `model.dtype`,
on the same first --limit eval articles, and the predictions are paired by example id. Where they
differ, fp32's margin between its top two labels says whether it was a near tie.

    .venv/bin/python benchmarks/bf16_agreement.py [--limit 150] [--device cpu|cuda] [--out DIR]

On CPU bf16 is much slower than fp32 (no native bf16 matmul on most CPUs): the figure is about
precision, not speed. Prints one JSON object: agreement, the fp32 margins where the two differ,
both accuracies, seconds per run."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

TASK = Path(__file__).resolve().parent / "tasks" / "bbc_news.yaml"


def agreement(task_file: Path, limit: int, device: str, work: Path, strategy: str = "zero_shot") -> dict:
    """Both precisions' predictions on the first `limit` eval examples of `task_file`, compared."""
    from harness.compare import compare
    from harness.store import Store

    raw = yaml.safe_load(task_file.read_text())
    name = raw.get("model", "smollm2-135m-instruct")
    name = name if isinstance(name, str) else name["name"]
    for split in ("train", "eval", "validation"):
        if isinstance(raw["data"].get(split), str):
            raw["data"][split] = str((task_file.parent / raw["data"][split]).resolve())
    out, predictions = {"task": raw["name"], "device": device, "limit": limit}, {}
    for dtype in ("float32", "bfloat16"):
        path = work / f"{dtype}.yaml"
        path.write_text(yaml.safe_dump({**raw, "model": {"name": name, "dtype": dtype, "device": device}}))
        store = work / f"{dtype}.sqlite"
        start = time.perf_counter()
        report = compare(path, strategies=[strategy], limit=limit, store_path=store, progress=False)
        out[f"{dtype}_s"] = round(time.perf_counter() - start, 1)
        [row] = report.strategies
        out[f"{dtype}_{row.quality.metric}"] = row.quality.value
        kept = Store(store)
        try:
            predictions[dtype] = {e["example_id"]: e for e in kept.examples(row.run_id)}
        finally:
            kept.close()
    fp32, bf16 = predictions["float32"], predictions["bfloat16"]
    ids = sorted(fp32)
    differ = [i for i in ids if fp32[i]["prediction"] != bf16[i]["prediction"]]
    out.update(examples=len(ids), agree=len(ids) - len(differ), agreement=1 - len(differ) / len(ids),
               disagreement_margins=[round(margin(fp32[i]), 3) for i in differ])
    return out


def margin(example: dict) -> float:
    """fp32's lead of its answer over the runner-up label, in nats: below bf16's rounding of the
    logits (8 bits of mantissa: ~0.1 on a logit of 30), the two precisions may pick either."""
    top, second = sorted(example["extra"]["logprobs"].values(), reverse=True)[:2]
    return top - second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=150, help="first N eval articles (default 150)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--task", type=Path, default=TASK)
    parser.add_argument("--out", type=Path, help="work folder (default: a new temp folder)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    work = args.out or Path(tempfile.mkdtemp(prefix="bf16_agreement_"))
    work.mkdir(parents=True, exist_ok=True)
    result = agreement(args.task, args.limit, args.device, work)
    print(json.dumps(result, indent=1))
    sys.exit(0 if result["agreement"] >= 0.95 else 1)


if __name__ == "__main__":
    main()
