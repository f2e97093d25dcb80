"""What a result needs to be trusted later: code version, package versions, hardware."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

_PACKAGES = ("ft-harness", "torch", "transformers", "peft", "accelerate", "datasets", "evaluate",
             "sentence-transformers", "faiss-cpu", "scipy", "numpy")


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def provenance() -> dict:
    import psutil
    import torch

    return {
        "git_sha": _git_sha(),
        "packages": {p: _version(p) for p in _PACKAGES},
        "python": platform.python_version(),
        "hardware": {
            "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
