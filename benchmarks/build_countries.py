"""Build the country facts QA task: benchmarks/data/countries/{train,eval}.jsonl.

Source: the per-country JSON files shipped in the PyPI package countryinfo 1.0.1
(Porimol Chandro, MIT licence; its README says "Data is sourced primarily from
Wikipedia"). Two kinds of short-answer questions:
  capital  "What is the capital of France?"                   -> "Paris"
  region   "Which region is France in: Africa, ..., Oceania?" -> "Europe"  (UN M49 region)

Usage: python benchmarks/build_countries.py [--out FOLDER]
"""
import importlib.util
import json
import re
from collections import defaultdict
from pathlib import Path

from harness.builders import check_source, print_splits, run, split_counts, split_groups, write_jsonl

SEED = 1234
# The shipped JSONL was built from this release; another one may hold different data.
SOURCE = ("countryinfo", "1.0.1")
EVAL_QUESTIONS = 150
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "countries"
REGIONS = ["Africa", "Americas", "Asia", "Europe", "Oceania"]

# The package's capital is stale, disputed or one of several, so any gold answer would
# be unfair to the model (keyed by ISO alpha-3; the region question is still asked).
CAPITAL_EXCLUDED = {
    "ANT": "Netherlands Antilles, dissolved in 2010 (name stored in French)",
    "SCG": "Serbia and Montenegro, dissolved in 2006",
    "KAZ": "stored as Nur-Sultan; renamed back to Astana in 2022",
    "SWZ": "Lobamba (legislative) vs Mbabane (administrative)",
    "BOL": "Sucre (constitutional) vs La Paz (seat of government)",
    "LKA": "Colombo stored; the official capital is Sri Jayawardenepura Kotte",
    "HKG": "no capital; stored as 'City of Victoria'",
    "ISR": "status of Jerusalem is disputed",
    "MSR": "Plymouth, abandoned since 1997",
    "TKL": "the seat rotates between the three atolls",
    "ESH": "disputed territory; stored as El Aaiún (Laayoune)",
}
# Transcontinental countries and remote territories: the UN M49 region is a
# convention a reasonable reader could dispute (Cyprus in Asia, Greenland in the Americas).
REGION_EXCLUDED = {"ARM", "ATF", "AZE", "CYP", "EGY", "GEO", "GRL", "IOT", "KAZ", "RUS",
                   "SGS", "TUR"}
# Names stored in index order ("Virgin Islands, British") read badly in a question.
NAME_FIXES = {"VGB": "British Virgin Islands", "VIR": "United States Virgin Islands"}
# "What is the capital of the United Kingdom?", not "... of United Kingdom?".
NEEDS_THE = re.compile(r"^(United|Republic|Democratic|Federated|Czech|Central African|"
                       r"Dominican|Netherlands|Philippines|Maldives|Comoros|Seychelles|"
                       r"Isle of|British Indian)|Islands$")


def data_dir() -> Path:
    spec = importlib.util.find_spec("countryinfo")
    # data/ holds countries with ISO codes; data_no_iso/ (Gaza Strip, Jan Mayen, ...) is skipped.
    return Path(spec.submodule_search_locations[0]) / "data"


def load_countries() -> tuple[dict, list]:
    """Return {alpha3: record} and the alpha3 codes dropped because their files disagree."""
    by_code = defaultdict(list)
    for path in sorted(data_dir().glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        by_code[record["ISO"]["alpha3"]].append(record)
    countries, conflicts = {}, []
    for code, records in sorted(by_code.items()):
        # Some countries ship twice (Curaçao.json / curaçao.json); keep them only when
        # the copies agree, since e.g. the two Palestine files give different capitals.
        if len({(r["name"], json.dumps(r.get("capital"))) for r in records}) > 1:
            conflicts.append(code)
        else:
            countries[code] = records[0]
    return countries, conflicts


def questions_for(code: str, record: dict) -> list[dict]:
    name = NAME_FIXES.get(code, record["name"])
    name = re.sub(r"^The ", "the ", name)
    if NEEDS_THE.search(name):
        name = "the " + name
    out = []
    capital = record.get("capital")
    # Only a non-empty single string is a fair gold answer ("A / B / C" lists are not).
    if (isinstance(capital, str) and capital.strip() and "/" not in capital
            and code not in CAPITAL_EXCLUDED):
        out.append(("capital", f"What is the capital of {name}?", capital.strip()))
    if record.get("region") in REGIONS and code not in REGION_EXCLUDED:
        options = ", ".join(REGIONS[:-1]) + " or " + REGIONS[-1]
        out.append(("region", f"Which region is {name} in: {options}?", record["region"]))
    return [{"id": f"{code.lower()}-{kind}", "question": q, "answer": a,
             "country": record["name"], "kind": kind} for kind, q, a in out]


def main(out_dir: Path = DEFAULT_OUT) -> dict:
    check_source(*SOURCE)
    countries, conflicts = load_countries()
    by_country = {code: qs for code, rec in countries.items() if (qs := questions_for(code, rec))}
    # Whole countries go to one side, so eval never asks about a country whose other question
    # was shown as a few-shot example or trained on.
    train, evaluation = split_groups(by_country, EVAL_QUESTIONS, SEED)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "train.jsonl", train)
    write_jsonl(out_dir / "eval.jsonl", evaluation)
    summary = {"countries_read": len(countries) + len(conflicts),
               "conflicting_dropped": conflicts, "countries_used": len(by_country),
               **split_counts(train, evaluation, "kind")}
    print(f"read {summary['countries_read']} ISO countries, dropped {len(conflicts)} with "
          f"conflicting copies {conflicts}, {len(by_country)} countries have questions")
    print_splits(out_dir, summary, train, evaluation,
                 lambda part: f"{len(part):4} questions, {len({r['country'] for r in part}):3} countries")
    return summary


if __name__ == "__main__":
    run(__doc__, DEFAULT_OUT, main)
