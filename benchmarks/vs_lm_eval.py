"""Our harness against lm-evaluation-harness 0.4.13: same data, same prompt, same model.

Both tools score the BBC News topic task as 5-way multiple choice on the first --limit eval
articles: the prompt is "Article: {{text}}\\nTopic:" with no chat template, each label is scored
as the continuation " " + label (lm-eval's default target_delimiter), and the label with the
highest summed log-likelihood is the prediction (lm-eval's `acc`, our raw-format arm).
Each article is first cut to --max-input-tokens tokens with the model's tokenizer and written to
one JSONL that both tools read, so they see identical text.

Each number of demonstrations in --shots is run by both tools: 0 (lm-eval's default, our
zero_shot arm) and 5 (lm-eval's --num_fewshot 5 with the `first_n` sampler over a fewshot split
holding the harness's five demonstrations in the harness's order, our few_shot arm): the same
fixed demonstrations before every query, as a deployed few-shot prompt has.

It prints both accuracies, how many prompts are byte-identical, how many predictions are
identical (the harness must agree with lm-eval on at least --min-agreement of them, else the exit
status is 1) and where they differ, and the wall-clock time of each whole command (`lm_eval ...`
and `harness compare ...`, model loading included; median of --repeats runs) with the ratio. Also
per tool: the command's CPU seconds (less sensitive than wall time to other processes on the
machine) and the scoring loop alone (lm-eval: its "Running loglikelihood requests" progress bar,
to the second; harness: the summed batch times in its store). The harness command also bootstraps
intervals and writes its store. Last, the harness's few-shot throughput against its zero-shot's.

    make install && .venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/vs_lm_eval.py
        [--limit 200] [--max-input-tokens 128] [--batch-size 8] [--shots 0 5] [--repeats 1] [--out DIR]

Nothing is fetched from the network: the model is the built-in smollm2-135m-instruct (a local
safetensors folder), and lm-eval reads the JSONL through the `json` dataset builder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "bbc_news"
MODEL = "smollm2-135m-instruct"
LABELS = ["business", "entertainment", "politics", "sport", "tech"]
TEMPLATE = "Article: {{text}}\nTopic:"
DELIMITER = " "  # lm-eval's default target_delimiter
LM_EVAL_TASK = "bbc_news_vs_harness"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


# ---------------------------------------------------------------- data and task files

def cut_rows(path: Path, n: int, tokenizer, max_tokens: int) -> list[dict]:
    """The first n rows of a JSONL, each text cut to its first max_tokens tokens (no special tokens)."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if len(rows) == n:
                break
            row = json.loads(line)
            ids = tokenizer(row["text"], add_special_tokens=False)["input_ids"]
            rows.append({"id": row["id"], "text": tokenizer.decode(ids[:max_tokens]), "label": row["label"]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_yaml(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000), encoding="utf-8")
    return path


def lm_eval_task(folder: Path, eval_file: Path, demos_file: Path | None) -> Path:
    """lm-eval's task over the eval file; `demos_file`, when there are demonstrations (lm-eval refuses a
    fewshot split with no rows: "Instruction 'train' corresponds to no data")."""
    files = {"test": str(eval_file)} | ({"train": str(demos_file)} if demos_file else {})
    # The demonstrations in the file's order, the same for every query.
    fewshot = {"fewshot_split": "train", "fewshot_config": {"sampler": "first_n"}} if demos_file else {}
    return write_yaml(folder / f"{LM_EVAL_TASK}.yaml", {
        "task": LM_EVAL_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": files},
        "test_split": "test",
        **fewshot,
        "output_type": "multiple_choice",
        "doc_to_text": TEMPLATE,
        "doc_to_choice": LABELS,
        "doc_to_target": "{{" + repr(LABELS) + ".index(label)}}",
        "target_delimiter": DELIMITER,
        "metric_list": [{"metric": "acc"}],
    })


def harness_task(folder: Path, train_file: Path, eval_file: Path, batch_size: int, shots: list[int],
                 device: str = "cpu") -> Path:
    return write_yaml(folder / "harness_task.yaml", {
        "name": "bbc_news_vs_lm_eval",
        "type": "classification",
        # On a GPU in float32 too, as lm-eval is run: the comparison is of the tools, not precisions.
        "model": MODEL if device == "cpu" else {"name": MODEL, "device": device, "dtype": "float32"},
        "data": {"train": str(train_file), "eval": str(eval_file)},
        "fields": {"id": "id", "input": "text", "target": "label"},
        # raw: no chat template; each label is scored as the continuation target_delimiter + label.
        "prompt": {"format": "raw", "template": TEMPLATE, "target_delimiter": DELIMITER},
        "labels": LABELS,
        "metrics": ["accuracy"],
        # random over a train split of exactly the demonstrations: all of them, in select_demos' order.
        # One arm per number of demonstrations (few_shot with balanced: false is these axes).
        "strategies": {"zero_shot": {},
                       **{f"few_shot_{k}": {"demos": {"k": k, "select": "random"}} for k in shots if k}},
        "seed": 1234,
        "limits": {"batch_size": batch_size},
    })


# ---------------------------------------------------------------- running the tools

def tool(name: str) -> str:
    """A console script of this venv (next to the running python), else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        sys.exit(f"{name} not found: install it (.venv/bin/pip install -e '.[bench]')")
    return found


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run cmd with stdout and stderr to log; its wall-clock and CPU seconds. Exits on failure."""
    env = {**os.environ, **OFFLINE}
    with log.open("w") as out:
        start, cpu = time.perf_counter(), cpu_children()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        seconds, cpu = time.perf_counter() - start, cpu_children() - cpu
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n... {log}:\n{tail}")
    return seconds, cpu


def fresh(folder: Path) -> None:
    """An empty folder: a rerun into the same --out neither reuses a stored run nor finds two result files."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def run_lm_eval(folder: str, task_dir: Path, out: Path, batch_size: int, shots: int, device: str = "cpu") -> dict:
    fresh(out)
    cmd = [tool("lm_eval"), "--model", "hf", "--model_args", f"pretrained={folder},dtype=float32",
           "--device", device, "--batch_size", str(batch_size), "--tasks", LM_EVAL_TASK, "--num_fewshot", str(shots),
           "--include_path", str(task_dir), "--log_samples", "--output_path", str(out)]
    seconds, cpu = timed(cmd, out / "log.txt")
    [results] = out.rglob("results_*.json")
    [samples] = out.rglob(f"samples_{LM_EVAL_TASK}_*.jsonl")
    logprobs, prompts = {}, {}
    for line in samples.read_text(encoding="utf-8").splitlines():
        s = json.loads(line)
        # filtered_resps: one [loglikelihood, is_greedy] per choice, in doc_to_choice order.
        logprobs[s["doc"]["id"]] = [float(r[0]) for r in s["filtered_resps"]]
        prompts[s["doc"]["id"]] = s["arguments"]["gen_args_0"]["arg_0"]  # the context, before " " + label
    # The scoring loop: the last elapsed time tqdm printed for the loglikelihood requests.
    bars = re.findall(r"Running loglikelihood requests: 100%.*?\[(?:(\d+):)?(\d+):(\d+)<",
                      (out / "log.txt").read_text(errors="replace"))
    loop = None
    if bars:
        h, m, s = bars[-1]
        loop = int(h or 0) * 3600 + int(m) * 60 + int(s)
    acc = json.loads(results.read_text())["results"][LM_EVAL_TASK]["acc,none"]
    return {"seconds": seconds, "cpu": cpu, "loop": loop, "accuracy": acc, "logprobs": logprobs,
            "prompts": prompts}


def run_harness(task_file: Path, out: Path, shots: int) -> dict:
    from harness.store import Store

    fresh(out)
    store, report = out / "h.sqlite", out / "h.json"
    name = f"few_shot_{shots}" if shots else "zero_shot"
    cmd = [tool("harness"), "compare", str(task_file), "--strategies", name, "--store", str(store),
           "--json", str(report), "--no-progress"]
    seconds, cpu = timed(cmd, out / "log.txt")
    [arm] = json.loads(report.read_text())["strategies"]
    db = Store(store, readonly=True)
    try:
        examples = db.examples(arm["run_id"])
    finally:
        db.close()
    logprobs = {e["example_id"]: [e["extra"]["logprobs"][label] for label in LABELS] for e in examples}
    prompts = {e["example_id"]: e["prompt"] for e in examples}
    loop = sum(e["latency_ms"] for e in examples) / 1000  # each example carries its batch's time / batch size
    return {"seconds": seconds, "cpu": cpu, "loop": loop, "accuracy": arm["quality"]["value"],
            "logprobs": logprobs, "prompts": prompts, "tokens": arm["tokens"]}


# ---------------------------------------------------------------- report

def argmax(xs: list[float]) -> int:
    return max(range(len(xs)), key=xs.__getitem__)


def margin(xs: list[float]) -> float:
    """How far the winning label is ahead of the runner-up, in nats."""
    top = sorted(xs, reverse=True)
    return top[0] - top[1]


def med(runs: list[dict], key: str) -> float | None:
    """The median of one figure over the repeats (None when a run could not measure it)."""
    values = [r[key] for r in runs]
    return None if None in values else statistics.median(values)


def compare_shots(shots: int, rows: list[dict], lm: list[dict], ours: list[dict], min_agreement: float) -> bool:
    """Print one number of demonstrations' table; whether the predictions agree enough."""
    gold = {r["id"]: LABELS.index(r["label"]) for r in rows}
    a, b = lm[0]["logprobs"], ours[0]["logprobs"]
    if set(a) != set(gold) or set(b) != set(gold):
        sys.exit(f"example ids differ: lm-eval {len(a)}, harness {len(b)}, data {len(gold)}")
    same = [i for i in gold if argmax(a[i]) == argmax(b[i])]
    same_prompt = sum(lm[0]["prompts"][i] == ours[0]["prompts"][i] for i in gold)
    share = len(same) / len(gold)
    gap = max(abs(x - y) for i in gold for x, y in zip(a[i], b[i]))
    tokens = ours[0]["tokens"]

    print(f"\n{shots}-shot ({tokens['prompt_mean']:.0f} prompt tokens per article, {tokens['cached_mean']:.0f} of them "
          f"served from the harness's prefix cache)")
    print(f"{'tool':<10} {'accuracy':>9} {'command s':>10} {'command cpu s':>14} {'scoring s':>10}")
    for name, runs in (("lm-eval", lm), ("harness", ours)):
        loop = med(runs, "loop")
        print(f"{name:<10} {runs[0]['accuracy']:9.3f} {med(runs, 'seconds'):10.1f} {med(runs, 'cpu'):14.1f} "
              f"{'-' if loop is None else format(loop, '.1f'):>10}")
    print(f"identical prompts: {same_prompt}/{len(gold)}")
    print(f"identical predictions: {len(same)}/{len(gold)} ({100 * share:.1f}%)")
    print(f"largest log-likelihood difference on any label: {gap:.2e} nats")
    for i in sorted(set(gold) - set(same)):
        print(f"  differs: {i} (gold {LABELS[gold[i]]}): lm-eval {LABELS[argmax(a[i])]} "
              f"(margin {margin(a[i]):.2e}), harness {LABELS[argmax(b[i])]} (margin {margin(b[i]):.2e})")
    print(f"speed-up over lm-eval, whole command: {med(lm, 'seconds') / med(ours, 'seconds'):.2f}x")
    if med(lm, "loop") and med(ours, "loop"):
        print(f"speed-up over lm-eval, scoring loop:  {med(lm, 'loop') / med(ours, 'loop'):.2f}x")
    if share < min_agreement:
        print(f"FAIL: agreement {100 * share:.1f}% < {100 * min_agreement:.0f}%")
    return share >= min_agreement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200, help="first N eval articles (default 200)")
    parser.add_argument("--max-input-tokens", type=int, default=128, help="each article cut to this many tokens")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shots", type=int, nargs="+", default=[0, 5], help="numbers of demonstrations (default 0 5)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each tool; times are medians")
    parser.add_argument("--min-agreement", type=float, default=0.99, help="exit 1 below this share")
    parser.add_argument("--out", type=Path, help="work folder (default: a new temp folder, kept for inspection)")
    parser.add_argument("--device", default="cpu", help="where both tools run the model: cpu (default) or cuda")
    args = parser.parse_args()
    if len({k for k in args.shots if k}) > 1:
        parser.error("--shots: 0 and one number of demonstrations (both tools draw them from the same split)")
    os.environ.update(OFFLINE)

    from transformers import AutoTokenizer

    from harness.backends.local import resolve_model
    from strategies.demos import select_demos

    eval_src = DATA / "eval.jsonl"
    if not eval_src.is_file():
        sys.exit(f"{eval_src} is missing: run `make install` or .venv/bin/python benchmarks/build_bbc_news.py")
    folder = resolve_model(MODEL)  # converts the packaged GGUF once, outside the timings
    tokenizer = AutoTokenizer.from_pretrained(folder)
    work = args.out or Path(tempfile.mkdtemp(prefix="vs_lm_eval_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = cut_rows(eval_src, args.limit, tokenizer, args.max_input_tokens)
    eval_file = write_jsonl(work / "eval.jsonl", rows)
    # The train split is the demonstrations (the most any arm uses), which the harness draws all of,
    # in select_demos' order for the task seed: lm-eval's first_n takes them in that order.
    k = max(args.shots)
    # With no demonstrations (--shots 0) the harness still needs a train split to load: one row, never shown.
    demos = cut_rows(DATA / "train.jsonl", max(k, 1), tokenizer, args.max_input_tokens)
    train_file = write_jsonl(work / "train.jsonl", demos)
    demos_file = write_jsonl(work / "demos.jsonl", select_demos(demos, k, 1234, by_label=False)) if k else None
    task_dir = work / "lm_eval_task"
    task_dir.mkdir(exist_ok=True)
    lm_eval_task(task_dir, eval_file, demos_file)
    harness_file = harness_task(work, train_file, eval_file, args.batch_size, args.shots, args.device)
    print(f"{len(rows)} BBC News eval articles cut to {args.max_input_tokens} tokens, model {MODEL} "
          f"(float32, {args.device}, batch {args.batch_size}), {args.repeats} run(s) per tool; files in {work}",
          flush=True)

    ok, harness_loops = True, {}
    for shots in args.shots:
        lm, ours = [], []
        for i in range(args.repeats):  # alternated, so a slow spell of the machine hits both tools
            lm.append(run_lm_eval(folder, task_dir, work / f"lm_eval_{shots}_{i}", args.batch_size, shots, args.device))
            ours.append(run_harness(harness_file, work / f"harness_{shots}_{i}", shots))
            print(f"{shots}-shot run {i + 1}: lm-eval {lm[-1]['seconds']:.1f} s, harness {ours[-1]['seconds']:.1f} s",
                  flush=True)
        ok = compare_shots(shots, rows, lm, ours, args.min_agreement) and ok
        harness_loops[shots] = med(ours, "loop")
    if 0 in harness_loops:
        for shots, loop in harness_loops.items():
            if shots:
                print(f"\nharness {shots}-shot scoring loop / 0-shot's: {loop / harness_loops[0]:.2f}x")
    load, cores = os.getloadavg()[0], os.cpu_count()
    if load > cores:
        print(f"note: load average {load:.1f} on {cores} cores at the end: other processes competed, times are "
              "inflated")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
