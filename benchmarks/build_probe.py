"""Build the default forgetting probe's general text from the PyPI package `mendeleev`.

Forgetting is measured as the change in loss on text outside the task's domain. The default
probe is encyclopaedic prose about the chemical elements (description, sources and uses of
each element, from mendeleev's bundled SQLite database, MIT licence): general English far from
news topics or country capitals. A task whose domain is chemistry should name its own probe.

    python benchmarks/build_probe.py [OUT_FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sqlite3
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "harness" / "probes" / "general_text.jsonl"
N_PASSAGES = 40


def main(out: Path = DEFAULT_OUT) -> int:
    folder = Path(importlib.util.find_spec("mendeleev").submodule_search_locations[0])
    db = sqlite3.connect(folder / "elements.db")
    rows = db.execute("SELECT atomic_number, name, description, sources, uses FROM elements "
                      "WHERE description IS NOT NULL ORDER BY atomic_number").fetchall()
    passages = []
    for number, name, *parts in rows:
        text = " ".join(" ".join(p.split()) for p in parts if p)
        # Short entries (the synthetic heavy elements) say little; keep passages of real prose.
        if len(text.split()) >= 40:
            passages.append({"id": f"element-{number}", "title": name, "text": text})
    passages = passages[:N_PASSAGES]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in passages), encoding="utf-8")
    print(f"wrote {len(passages)} passages to {out}")
    return len(passages)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    main(parser.parse_args().out)
