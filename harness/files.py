"""Where the harness keeps what it builds (converted models, adapters, retrieval indexes), and the one
way it writes them: beside the target, then renamed, so a reader or a rerun after a kill never
sees a half-written file or folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "ft-harness"))


@contextmanager
def atomic_file(path: Path) -> Iterator[str]:
    """`with atomic_file(p) as tmp: write(tmp)`: the file appears at `p` whole, or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """`with atomic_dir(t) as tmp: fill(tmp)`: the folder appears at `t` whole. When another process
    finished the same folder first, its copy is kept and ours dropped."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        yield tmp
        try:
            tmp.rename(target)
        except OSError:  # the target exists: another process finished first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
