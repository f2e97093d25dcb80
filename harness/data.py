"""Loading a task's splits through HF `datasets`, validated row by row before any work starts."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

from harness.config import Split
from harness.errors import HarnessError
from harness.examples import Example, TaskData
from harness.task import LoadedTask

_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _load_rows(task: LoadedTask, name: str, split: Split, digest) -> tuple[str, list[dict]]:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    if isinstance(split, str):
        path = Path(task.resolve(split))
        where = str(path)
        if not path.is_file():
            hint = f"; create it with: {task.config.data.build}" if task.config.data.build else ""
            raise HarnessError(f"{task.path}: data.{name}", f"data file not found: {path}{hint}")
        raw = path.read_bytes()
        if path.suffix != ".parquet":
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                line = raw[: e.start].count(b"\n") + 1
                raise HarnessError(where, f"line {line}: not UTF-8 text (byte {e.start}); re-save the file as "
                                          f"UTF-8") from None
        digest.update(name.encode() + hashlib.sha256(raw).digest())
        if not raw.strip():
            return where, []
        try:
            # datasets keys its cache on path and mtime: a file rewritten with the same mtime (cp -p,
            # rsync -t, tar) would come back with its old rows under the new bytes' hash.
            ds = datasets.load_dataset(_FORMATS[path.suffix], data_files=str(path), split="train",
                                       download_mode="force_redownload")
        except Exception as e:  # datasets wraps parser errors in several types; the first line says what
            raise HarnessError(where, f"could not be parsed as {path.suffix[1:]}: {_first_line(e)}") from None
    else:
        where = f"{task.path}: data.{name} (hub dataset {split.hub})"
        try:
            ds = datasets.load_dataset(split.hub, split.config, split=split.split)
        except Exception as e:
            raise HarnessError(where, f"could not be loaded: {_first_line(e)}") from None
        digest.update(name.encode() + ds._fingerprint.encode())
    return where, ds.to_list()


def _examples(task: LoadedTask, name: str, where: str, rows: list[dict], labelled: bool = True) -> list[Example]:
    """The split's examples; `labelled` False: its target column is not read (every target empty)."""
    cfg = task.config
    if not rows:
        raise HarnessError(where, f"the {name} split is empty")
    labels = set(cfg.labels or ())
    columns = (cfg.fields.input, cfg.fields.target, cfg.fields.id) if labelled else (cfg.fields.input, cfg.fields.id)
    out, seen = [], set()
    for i, row in enumerate(rows, start=1):
        for col in columns:
            if col is not None and (row.get(col) is None or str(row[col]).strip() == ""):
                raise HarnessError(f"{where}: row {i}", f"missing or empty field '{col}'")
        if not labelled:
            target = ""
        elif cfg.type == "structured":
            target = _json_object(row[cfg.fields.target], cfg.fields.target, f"{where}: row {i}")
        else:
            target = str(row[cfg.fields.target]).strip()
        if labels and target and target not in labels:
            raise HarnessError(f"{where}: row {i}",
                               f"label '{target}' is not in the task's label set {sorted(labels)}")
        ex_id = str(row[cfg.fields.id]) if cfg.fields.id else f"{name}-{i}"
        if ex_id in seen:
            raise HarnessError(f"{where}: row {i}", f"duplicate id '{ex_id}'")
        seen.add(ex_id)
        out.append(Example(ex_id, str(row[cfg.fields.input]), target, row, _aliases(row, cfg.fields.references,
                                                                                     f"{where}: row {i}")))
    return out


def _unlabelled(rows: list[dict], column: str) -> bool:
    """A train split without its target column (in no row), which only a teacher's answers can label."""
    return bool(rows) and all(row.get(column) is None or str(row[column]).strip() == "" for row in rows)


def _json_object(value: Any, column: str, where: str) -> str:
    """A structured target, a JSON object or a JSON string of one, as the compact JSON text that
    demonstrations show and fine-tuning trains on."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise HarnessError(where, f"field '{column}' is not JSON: a structured task's target is a JSON "
                                      f"object") from None
    if not isinstance(value, dict):
        raise HarnessError(where, f"field '{column}' is a {type(value).__name__}, not a JSON object: a structured "
                                  f"task's target is an object, e.g. {{\"name\": \"Tungsten\"}}")
    return json.dumps(value, ensure_ascii=False)


def _aliases(row: dict, column: str | None, where: str) -> tuple[str, ...]:
    if column is None:
        return ()
    value = row.get(column)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HarnessError(where, f"field '{column}' (fields.references) must be a list of answers, e.g. "
                                  f'["Davy", "Humphry Davy"]')
    return tuple(v.strip() for v in value if v.strip())


def _check_leakage(task: LoadedTask, splits: dict[str, list[Example]]) -> None:
    # Few-shot demos and fine-tuning both draw on train: an eval input that also sits in train
    # would let the gold answer leak into the prompt or the weights (lm-eval-harness #4145, #3978).
    # An eval input among the unlabeled ones would put the teacher's answer to it in a student's weights.
    for name in ("train", "unlabeled"):
        pool = {_normalise(ex.input) for ex in splits.get(name, ())}
        leaked = [ex.id for ex in splits["eval"] if _normalise(ex.input) in pool]
        if leaked:
            shown = ", ".join(leaked[:5]) + (" ..." if len(leaked) > 5 else "")
            raise HarnessError(f"{task.path}: data.eval",
                               f"{len(leaked)} eval example(s) also appear in the {name} split (leakage): {shown}")


def load_data(task: LoadedTask) -> TaskData:
    cfg = task.config
    digest = hashlib.sha256()
    splits, train_labelled = {}, True
    for name in ("train", "eval", "validation", "unlabeled"):
        split = getattr(cfg.data, name)
        if split is not None:
            where, rows = _load_rows(task, name, split, digest)
            labelled = name != "unlabeled" and not (name == "train" and _unlabelled(rows, cfg.fields.target))
            if name == "train":
                train_labelled = labelled
            splits[name] = _examples(task, name, where, rows, labelled)
    if "unlabeled" in splits:
        train_ids = {ex.id for ex in splits["train"]}
        clash = next((ex.id for ex in splits["unlabeled"] if ex.id in train_ids), None)
        if clash is not None:
            raise HarnessError(f"{task.path}: data.unlabeled", f"id '{clash}' is also a train example's; a teacher "
                                                               f"answers each input once, by its id")
    _check_leakage(task, splits)
    evaluation = splits["eval"]
    n = cfg.limits.eval_examples
    if n is not None and n < len(evaluation):
        # A seeded sample, kept in file order, so --limit 50 is a fair slice of the whole set.
        keep = sorted(random.Random(cfg.seed).sample(range(len(evaluation)), n))
        evaluation = [evaluation[i] for i in keep]
    return TaskData(splits["train"], evaluation, splits.get("validation"), digest.hexdigest()[:16],
                    splits.get("unlabeled", []), train_labelled)


def config_fingerprint(obj: Any) -> str:
    """A short stable hash of any JSON-able config, for store keys."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
