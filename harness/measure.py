"""Measurement in one place: wall time, peak memory, analytic FLOPs, and the provenance every result
carries (code version, package versions, hardware, when). The runner, training and retrieval all
measure through these functions, so a figure means the same thing in every row."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Kaplan et al. 2020, as used by Liu et al. 2022 (T-Few): a forward pass through a decoder-only
# Transformer costs about 2 FLOPs per parameter per token processed. Training adds the backward
# pass: activation gradients (2N) always, weight gradients (2N) only for trained weights. LoRA
# trains no base weight (its adapters are r << hidden, negligible), so it is ~4N per token; full
# fine-tuning ~6N.
# DPO on a LoRA adapter adds the frozen reference's forward pass (2N) to LoRA's 4N, on the tokens of
# both answers of every pair.
FLOPS_PER_PARAM_TOKEN = {"inference": 2, "lora": 4, "full": 6, "dpo": 6}
FLOPS_FORMULA = {
    "lora": "4 x base params x tokens seen (LoRA: no weight gradients for the base)",
    "full": "6 x params x tokens seen (forward, activation and weight gradients)",
    "dpo": "6 x base params x tokens seen (LoRA's 4, plus the reference model's forward pass)",
}

PACKAGES = ("ft-harness", "torch", "transformers", "peft", "accelerate", "datasets", "evaluate",
            "sentence-transformers", "faiss-cpu", "scipy", "numpy")


@dataclass
class Elapsed:
    s: float = 0.0

    @property
    def ms(self) -> float:
        return 1000 * self.s


@contextmanager
def timer():
    """`with timer() as t: ...` then `t.s`: wall time of the block (monotonic clock)."""
    out, t0 = Elapsed(), time.perf_counter()
    try:
        yield out
    finally:
        out.s = time.perf_counter() - t0


def peak_memory_mb() -> float:
    """Peak accelerator memory when there is one, else the process's peak resident set size.

    On CPU this is a process-wide high-water mark (it includes the model weights and never goes
    down), which is what a deployment would have to provision."""
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inference_flops(n_params: float, tokens: float) -> float:
    return FLOPS_PER_PARAM_TOKEN["inference"] * n_params * tokens


def training_flops(n_params: float, tokens: float, method: str = "lora") -> float:
    return FLOPS_PER_PARAM_TOKEN[method] * n_params * tokens


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out = {}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def hardware() -> dict:
    import psutil
    import torch

    return {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def provenance() -> dict:
    """What a result needs to be trusted later: code version, package versions, hardware, time."""
    return {"git_sha": _git_sha(), "packages": package_versions(), "python": platform.python_version(),
            "hardware": hardware(), "recorded_at": utc_now()}


def _mean_per_example(walls, sizes, axis=-1):
    return walls.sum(axis=axis) / sizes.sum(axis=axis)


def latency_mean_ci(latencies_ms, seed: int, confidence: float, n_resamples: int = 2000) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean latency per example, resampling whole batches.

    An example's latency is its batch's wall time divided by the batch size, so a batch's examples
    share one measurement and resampling them one by one would overstate the precision. Stored
    examples do not record their batch: those with the same latency are taken as one, which merges
    two batches only if their wall times per example are equal to the last bit."""
    import numpy as np
    from scipy.stats import bootstrap

    shares, sizes = np.unique(np.asarray(latencies_ms, dtype=float), return_counts=True)
    walls = shares * sizes
    if len(shares) < 2:
        # One batch: nothing to resample, the interval is the point.
        mean = float(_mean_per_example(walls, sizes))
        return mean, mean
    res = bootstrap((walls, sizes), _mean_per_example, paired=True, vectorized=True, confidence_level=confidence,
                    n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
