"""Build the structured elements task: benchmarks/data/elements/fields_{train,eval}.jsonl.

Source: the same mendeleev 1.3.0 database as benchmarks/build_elements.py, and the same document per
element (its corpus.jsonl entry). Each example is one element's document, and its target the JSON
object of four of the database's columns:
  {"name": "Tungsten", "symbol": "W", "atomic_number": 74, "discovery_year": 1783}
(`discovery_year` is null for the elements known since ancient times). Split by element: no eval
element has a train example.

Usage: python benchmarks/build_elements_fields.py [--out FOLDER]
"""
from pathlib import Path

from build_elements import DEFAULT_OUT, SEED, SOURCE, document, load_elements

from harness.builders import check_source, print_splits, run, split_counts, split_groups, write_jsonl

EVAL_ELEMENTS = 40


def example(el: dict) -> dict:
    target = {"name": el["name"], "symbol": el["symbol"], "atomic_number": el["atomic_number"],
              "discovery_year": el["discovery_year"] or None}
    return {"id": el["name"].lower(), "document": document(el)["text"], "fields": target,
            "known_since": "antiquity" if target["discovery_year"] is None else "discovered"}


def main(out_dir: Path = DEFAULT_OUT) -> dict:
    check_source(*SOURCE)
    by_element = {el["name"]: [example(el)] for el in load_elements()}
    train, evaluation = split_groups(by_element, EVAL_ELEMENTS, SEED)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "fields_train.jsonl", train)
    write_jsonl(out_dir / "fields_eval.jsonl", evaluation)
    summary = split_counts(train, evaluation, "known_since")
    print_splits(out_dir, summary, train, evaluation, lambda part: f"{len(part):4} elements")
    return summary


if __name__ == "__main__":
    run(__doc__, DEFAULT_OUT, main)
