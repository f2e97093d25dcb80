"""Build the chemical elements knowledge task: benchmarks/data/elements/{corpus,train,eval}.jsonl.

Source: the SQLite database elements.db shipped in the PyPI package mendeleev 1.3.0 (Lukasz
Mentel, MIT licence; the package cites no separate source for its prose fields). corpus.jsonl
holds one document per element, written from the database's own columns: name, symbol, atomic
number, discoverers, discovery year and place, and the prose description, sources, uses and name
origin. The questions ask for facts stated in that document:
  number      "What is the atomic number of Tungsten?"        -> "74"
  year        "In which year was Tungsten discovered?"        -> "1783"
  discoverer  "Who discovered Tungsten?"                      -> "Fausto and Juan José de Elhuyar"

Usage: python benchmarks/build_elements.py [--out FOLDER]
"""
import importlib.util
import re
import sqlite3
from pathlib import Path

from harness.builders import check_source, print_splits, run, split_counts, split_groups, write_jsonl

SEED = 1234
# The shipped JSONL was built from this release; another one may hold different data.
SOURCE = ("mendeleev", "1.3.0")
EVAL_QUESTIONS = 120
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "elements"
YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")


def database() -> Path:
    spec = importlib.util.find_spec("mendeleev")
    if spec is None:
        raise SystemExit(f"mendeleev is not installed: pip install mendeleev=={SOURCE[1]}")
    return Path(spec.submodule_search_locations[0]) / "elements.db"


def load_elements() -> list[dict]:
    db = sqlite3.connect(f"file:{database()}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    cols = ("atomic_number, symbol, name, discoverers, discovery_year, discovery_location, description, "
            "sources, uses, name_origin")
    rows = [dict(r) for r in db.execute(f"SELECT {cols} FROM elements ORDER BY atomic_number")]
    db.close()
    return rows


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def document(el: dict) -> dict:
    """The element's encyclopaedia entry: structured facts first, then the package's prose."""
    parts = [f"{el['name']} (symbol {el['symbol']}) is the chemical element with atomic number "
             f"{el['atomic_number']}."]
    if el["discovery_year"]:
        place = _clean(el["discovery_location"]).replace("/", " and ")
        parts.append(f"It was discovered by {_clean(el['discoverers'])} in {el['discovery_year']}"
                     + (f" in {place}." if place else "."))
    else:
        parts.append("It has been known since ancient times.")
    parts.append(_clean(el["description"]))
    for label, column in (("Sources", "sources"), ("Uses", "uses"), ("Name origin", "name_origin")):
        if _clean(el[column]):
            parts.append(f"{label}: {_clean(el[column])}")
    return {"id": el["name"].lower(), "title": el["name"], "text": " ".join(parts),
            "source": f"mendeleev {SOURCE[1]} elements.db, element {el['atomic_number']}"}


def single_discoverer(el: dict) -> str | None:
    """One named person, so the gold answer is a name rather than a list or an institution."""
    who = _clean(el["discoverers"])
    if not el["discovery_year"] or re.search(r",|;|/| and |et al|Institute|Laboratory|Research|Centre|RIKEN", who):
        return None
    return who


def questions_for(el: dict) -> list[dict]:
    name, doc_id = el["name"], el["name"].lower()
    out = [("number", f"What is the atomic number of {name}?", str(el["atomic_number"]))]
    year = el["discovery_year"]
    # The prose sometimes gives another year (Hydrogen: 1766 in the data, "in 1776" in the text);
    # such a document answers the question two ways, so it is not asked.
    if year and set(YEAR.findall(el["description"] or "")) <= {str(year)}:
        out.append(("year", f"In which year was {name} discovered?", str(year)))
    who = single_discoverer(el)
    if who:
        out.append(("discoverer", f"Who discovered {name}?", who))
    return [{"id": f"{doc_id}-{kind}", "question": q, "answer": a, "element": name, "doc_id": doc_id, "kind": kind}
            for kind, q, a in out]


def main(out_dir: Path = DEFAULT_OUT) -> dict:
    check_source(*SOURCE)
    elements = load_elements()
    by_element = {el["name"]: questions_for(el) for el in elements}
    train, evaluation = split_groups(by_element, EVAL_QUESTIONS, SEED)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "corpus.jsonl", [document(el) for el in elements])
    write_jsonl(out_dir / "train.jsonl", train)
    write_jsonl(out_dir / "eval.jsonl", evaluation)
    summary = {"elements": len(elements),
               **split_counts(train, evaluation, "kind")}
    print(f"{len(elements)} elements, one corpus document each")
    print_splits(out_dir, summary, train, evaluation,
                 lambda part: f"{len(part):4} questions, {len({r['element'] for r in part}):3} elements")
    return summary


if __name__ == "__main__":
    run(__doc__, DEFAULT_OUT, main)
