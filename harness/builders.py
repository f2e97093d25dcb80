"""Helpers for scripts that build a task's data files from a source package (benchmarks/build_*.py)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path


def check_source(package: str, version: str) -> None:
    """Data built from another release of the source package would not match the shipped files."""
    try:
        installed = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"{package} is not installed: pip install {package}=={version}") from None
    if installed != version:
        print(f"warning: reading {package} {installed}; the shipped files come from {version}")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Sorted by id with fixed line endings, so a rebuild is byte-identical."""
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in sorted(rows, key=lambda r: r["id"]):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def split_groups(groups: dict[str, list[dict]], eval_size: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Whole groups (all questions about one country or element) go to one side, in seeded order,
    until eval holds `eval_size` rows: no eval question shares its subject with a train one."""
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    train, evaluation = [], []
    for key in keys:
        fits = len(evaluation) + len(groups[key]) <= eval_size
        (evaluation if fits else train).extend(groups[key])
    return train, evaluation


def split_counts(train: list[dict], evaluation: list[dict], key: str) -> dict[str, dict[str, int]]:
    """Rows per value of `key` in each split: the build summary's balance check."""
    return {name: dict(sorted(Counter(r[key] for r in part).items()))
            for name, part in (("train", train), ("eval", evaluation))}


def print_splits(out_dir: Path, counts: dict, train: list[dict], evaluation: list[dict],
                 describe: Callable[[list[dict]], str]) -> None:
    for name, part in (("train", train), ("eval", evaluation)):
        print(f"{name:5} {describe(part)}  {counts[name]}")
    print(f"wrote {out_dir}")


def run(doc: str, default_out: Path, main: Callable[[Path], dict]) -> None:
    """A builder's command line: `--out FOLDER`, described by the script's docstring."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_out, help="output folder")
    main(parser.parse_args().out)
