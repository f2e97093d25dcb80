"""The `harness` command. Only argparse is imported up front: `harness --help` stays instant and
each command imports what it needs when it runs."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

from harness.errors import EXIT_BAD_INPUT, EXIT_INCONCLUSIVE, EXIT_INTERNAL, EXIT_OK, EXIT_REGRESSION, HarnessError


def _strategy_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one strategy, e.g. zero_shot,few_shot")
    return names


def _deprecated(old: str, new: str) -> None:
    """One warning line for a flag or form that changed; it keeps working for one release."""
    print(f"warning: {old} is deprecated and goes in the next release; use {new}", file=sys.stderr)


@contextmanager
def _human_output(json_path: str | None):
    """With `--json -` standard output carries the JSON alone: what is printed for people goes to
    standard error instead."""
    if json_path == "-":
        with redirect_stdout(sys.stderr):
            yield
    else:
        yield


def _write_json(result, json_path: str | None, what: str) -> None:
    if not json_path:
        return
    text = result.model_dump_json(indent=2) + "\n"
    if json_path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(text, encoding="utf-8")
    print(f"{what} written to {json_path}")


def _cmd_compare(args) -> int:
    from harness.compare import compare
    from harness.report import print_table, verdict_text
    from harness.tracking import TrackingError

    tracked: dict = {}
    failed = None
    with _human_output(args.json):
        try:
            report = compare(args.task, strategies=args.strategies, limit=args.limit, store_path=args.store,
                             force=args.force, progress=not args.no_progress, mlflow=args.mlflow, tracked=tracked)
        except TrackingError as e:  # the comparison ran and is stored: show it, then say what failed
            if e.report is None:
                raise
            report, failed = e.report, e
        print_table(report, wide=args.wide)
        _write_json(report, args.json if args.json != "-" else None, "report")
        print(f"stored as comparison {report.comparison_id} in {args.store}")
        if args.log_samples:
            from harness.export import log_samples

            path, n = log_samples(args.store, report.comparison_id, report.task, args.log_samples)
            print(f"{n} per-example rows written to {path}")
        if tracked:
            print(f"logged to MLflow: {tracked['parent']}")
        print(verdict_text(report))
    if args.json == "-":
        _write_json(report, "-", "report")
    if failed is not None:
        print(f"error: {failed}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _cmd_validate(args) -> int:
    from harness.validate import validate

    plan = validate(args.task, strategies=args.strategies, limit=args.limit, store_path=args.store,
                    mlflow=args.mlflow)
    print("\n".join(plan.lines()))
    return EXIT_OK


def _cmd_export(args) -> int:
    from harness.export import export

    n = export(args.store, comparison_id=args.comparison, fmt=args.format, out=args.out, stdout=sys.stdout)
    if args.out:
        print(f"{n} rows written to {args.out}")
    return EXIT_OK


def _stored_report(args):
    """The comparison the report command was asked for (by id, the latest of a task, or the latest),
    and the store's interrupted runs."""
    import sqlite3

    from pydantic import ValidationError

    from harness.results import ComparisonReport
    from harness.store import Store

    # Opening a missing path would create an empty store; say what is wrong instead.
    if not Path(args.store).is_file():
        raise HarnessError(args.store, "no results store here; run `harness compare` first or pass --store")
    try:
        # Read-only: a report needs no write access to the store or its folder, and migrates nothing.
        store = Store(args.store, readonly=True)
        try:
            stored = store.comparisons()
            interrupted = [r for r in store.runs_with_counts() if r["status"] == "interrupted"]
        finally:
            store.close()
    except sqlite3.DatabaseError as e:
        raise HarnessError(args.store, f"cannot be read as a results store: SQLite says '{e}'") from None
    if args.comparison is not None:
        chosen = [c for c in stored if c["id"] == args.comparison]
        where, what = "--comparison", f"no comparison {args.comparison}"
    elif args.task_name:
        chosen = [c for c in stored if c["task"] == args.task_name]
        where, what = "--task-name", f"no comparison of task '{args.task_name}'"
    else:
        chosen, where, what = stored, args.store, "no comparison stored yet"
    if not chosen:
        known = ", ".join(f"{c['id']} ({c['task']})" for c in stored) or "none"
        raise HarnessError(where, f"{what} in {args.store}; stored: {known}")
    c = chosen[0]
    try:
        report = ComparisonReport.model_validate({**c["report"], "comparison_id": c["id"]})
    except ValidationError:
        report = None
    if report is None or report.recommendation is None:
        raise HarnessError(where, f"comparison {c['id']} was stored before verdicts existed; "
                                  f"run `harness compare` on its task again")
    return report, interrupted


def _cmd_report(args) -> int:
    from harness.report import figures, render_html, render_markdown

    if args.old_task is not None:
        _deprecated("`harness report --task NAME`", "`--task-name NAME` (--task is a task file everywhere else)")
        args.task_name = args.task_name or args.old_task
    report, interrupted = _stored_report(args)
    if interrupted:
        # On stderr, so that the Markdown on stdout stays the report alone.
        runs = ", ".join(f"{r['id']} ({r['task']} {r['strategy']}, {r['examples']} examples stored)"
                         for r in interrupted)
        print(f"interrupted runs in {args.store}: {runs}; run `harness compare` on their task again to "
              f"resume them", file=sys.stderr)
    if args.json:
        with _human_output(args.json):
            _write_json(report, args.json if args.json != "-" else None, "report")
        if args.json == "-":
            _write_json(report, "-", "report")
    if not (args.markdown or args.html or args.json):
        print(render_markdown(report, {}))
        return 0
    pngs = figures(report)
    if args.markdown:
        md = Path(args.markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        links = {}
        for name, png in pngs.items():
            (md.parent / f"{md.stem}-{name}.png").write_bytes(png)
            links[name] = f"{md.stem}-{name}.png"
        md.write_text(render_markdown(report, links), encoding="utf-8")
        print(f"markdown written to {md} (plots beside it: {', '.join(links.values())})")
    if args.html:
        html = Path(args.html)
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(report, pngs), encoding="utf-8")
        print(f"html written to {html}")
    return 0


def _cmd_train(args) -> int:
    from harness.arm import build
    from harness.data import load_data
    from harness.distill import teacher_of
    from harness.registry import load_backend
    from harness.strategy import Trainable
    from harness.task import load_task

    task = load_task(args.task)
    # Only arms that change weights can train: the others are not built at all.
    candidates = {name: build(spec, task) for name, spec in task.arms.items() if spec.weights or spec.plugin}
    trainable = {name: s for name, s in candidates.items() if isinstance(s, Trainable)}
    if not trainable:
        raise HarnessError(f"{task.path}: strategies", "no arm that trains (e.g. lora); add `lora: {}`")
    if len(trainable) > 1 and args.strategy is None:
        raise HarnessError("--strategy", f"the task trains {', '.join(trainable)}; name one")
    name = args.strategy or next(iter(trainable))
    if name not in trainable:
        raise HarnessError("--strategy", f"'{name}' is not an arm of the task that trains; "
                                         f"these do: {', '.join(trainable)}")
    if teacher := teacher_of(task.arms[name]):
        raise HarnessError("--strategy", f"{name} trains on the answers of {teacher}, which `harness compare` runs "
                                         f"first; train it with harness compare")
    data = load_data(task)
    strategy = trainable[name]
    out = Path(args.output) if args.output else strategy.output_dir(data)
    backend = load_backend(task.arms[name].model, task.path.parent)
    strategy.check_prompts(data, backend)
    t = strategy.train(data, backend, out, progress=not args.no_progress)
    if t is not None:  # only the main process of a distributed run writes and reports
        print(f"weights saved to {out}: {t.steps} steps, {t.tokens_seen} tokens, "
              f"{t.wall_s:.0f} s, final loss {t.final_loss:.3f}")
    return 0


def _cmd_gate(args) -> int:
    from harness.gate import append_step_summary, gate, summary_text, write_junit, write_junit_error
    from harness.tracking import TrackingError


    overrides = {k: v for k, v in (("min_quality", args.min_quality), ("max_drop", args.max_drop),
                                   ("max_forgetting", args.max_forgetting),
                                   ("max_latency_p95_ms", args.max_latency_p95)) if v is not None}
    tracked: dict = {}
    failed = None
    with _human_output(args.json):
        try:
            result = gate(args.checkpoint, args.task, store_path=args.store, baseline_run=args.baseline,
                          baseline_checkpoint=args.baseline_checkpoint, overrides=overrides, limit=args.limit,
                          progress=not args.no_progress, mlflow=args.mlflow, tracked=tracked)
        except TrackingError as e:
            if e.report is None:
                raise
            result, failed = e.report, e
        except Exception as e:
            if args.junit:  # CI shows why the gate could not run, not only that a file is missing
                write_junit_error(str(e) if isinstance(e, HarnessError) else _internal(e), args.task, args.junit)
            raise
        print("\n".join(summary_text(result)))
        if args.junit:
            write_junit(result, args.junit)
            print(f"junit written to {args.junit}")
        _write_json(result, args.json if args.json != "-" else None, "gate result")
        if append_step_summary(result):
            print("summary appended to $GITHUB_STEP_SUMMARY")
        print(f"stored as gate result {result.gate_id} in {args.store}")
        if tracked:
            print(f"logged to MLflow: {tracked['run']}")
    if args.json == "-":
        _write_json(result, "-", "gate result")
    if failed is not None:
        print(f"error: {failed}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return {"pass": EXIT_OK, "fail": EXIT_REGRESSION, "inconclusive": EXIT_INCONCLUSIVE}[result.outcome]


def _cmd_dashboard(args) -> int:
    from importlib.util import find_spec

    if find_spec("streamlit") is None:
        raise HarnessError("harness dashboard", "needs streamlit, which is not installed "
                                                "(pip install 'ft-harness[dashboard]')")
    app = Path(find_spec("dashboard").submodule_search_locations[0]) / "app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", args.host,
           "--server.port", str(args.port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
           "--", "--store", str(Path(args.store).resolve())]
    print(f"dashboard on http://{args.host}:{args.port} reading {args.store} (Ctrl+C to stop)", flush=True)
    # Become the Streamlit server: one process to stop, and signals reach it directly.
    os.execv(sys.executable, cmd)


def _store_arg(p: argparse.ArgumentParser) -> None:
    from harness.store import DEFAULT_PATH

    p.add_argument("--store", default=os.environ.get("HARNESS_STORE", DEFAULT_PATH), metavar="PATH",
                   help="SQLite results store (default: %(default)s; env HARNESS_STORE)")


def _progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _json_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", metavar="PATH|-", help=f"also write the {what} as JSON here; `-`: to standard output, "
                                                    f"with everything else on standard error")


def _mlflow_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mlflow", metavar="URI", help="also log to this MLflow tracking server (default: the task's "
                                                   "tracking.mlflow, then $MLFLOW_TRACKING_URI; needs the mlflow "
                                                   "extra)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ft-harness")
    except PackageNotFoundError:  # run from a checkout that is not installed
        from harness import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="Is fine-tuning worth it? Run one task through zero-shot, few-shot, RAG and LoRA, "
                    "measure quality, latency and cost, and compare.")
    parser.add_argument("--version", action="version", version=f"harness {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compare", help="run a task through its strategies and print the comparison",
                       description="Run the task's strategies on its eval set and print quality (with 95% "
                                   "bootstrap intervals), latency, throughput, token counts and cost, then "
                                   "the verdict on fine-tuning. Finished runs are reused from the store; "
                                   "interrupted ones resume.")
    p.add_argument("task", help="task YAML file (docs/task-reference.md)")
    p.add_argument("--strategies", type=_strategy_list, metavar="A,B",
                   help="comma-separated subset of strategies (default: those in the task file); a learning "
                        "curve runs only with its arm")
    p.add_argument("--limit", type=int, metavar="N", help="score a seeded sample of N eval examples")
    _json_arg(p, "report")
    p.add_argument("--log-samples", metavar="DIR", help="also write one JSONL row per example and arm to "
                                                        "DIR/samples_<task>_<comparison>.jsonl")
    _mlflow_arg(p)
    _store_arg(p)
    p.add_argument("--force", action="store_true", help="recompute runs already finished in the store")
    p.add_argument("--wide", action="store_true", help="every column of the table (default: those read first, "
                                                       "fitting 120 columns); all are in --json and the dashboard")
    _progress_arg(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("validate", help="check a task file as compare would, and say what compare would run",
                       description="Run every check compare runs before it opens the store (the task, its data, "
                                   "metrics, model, each arm's components and prompts), then list the arms compare "
                                   "would run, fair baselines included, which of them are stored already, and an "
                                   "estimate of predictions, prompt tokens and training steps. Runs nothing and "
                                   "writes nothing. Exit 0 when valid, 2 otherwise (the same line compare prints).")
    p.add_argument("task", help="task YAML file")
    p.add_argument("--strategies", type=_strategy_list, metavar="A,B", help="as for compare")
    p.add_argument("--limit", type=int, metavar="N", help="as for compare")
    _mlflow_arg(p)
    _store_arg(p)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("export", help="write a stored comparison's per-example rows as JSONL or CSV",
                       description="One row per example and arm of a stored comparison (default: the latest): "
                                   "its id, input, prompt, prediction, target, every score, tokens and latency, as "
                                   "lm-evaluation-harness's --log_samples writes them. To standard output unless "
                                   "--out is given.")
    p.add_argument("--comparison", type=int, metavar="ID", help="comparison id (default: the latest)")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="default: %(default)s")
    p.add_argument("--out", metavar="PATH", help="write here instead of standard output")
    _store_arg(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("train", help="train the task's LoRA adapter only (the entry point for accelerate launch)",
                       description="Train the task's lora strategy (or another strategy that trains) and save the "
                                   "adapter, without evaluating. Runs unchanged under `accelerate launch "
                                   "[--num_processes N] -m harness train TASK.yaml`. A killed run resumes from its "
                                   "last checkpoint.")
    p.add_argument("task", help="task YAML file with a lora strategy")
    p.add_argument("--strategy", metavar="NAME", help="which strategy to train when the task has several that train")
    p.add_argument("--output", metavar="DIR", help="adapter folder (default: the cache folder compare reuses)")
    _progress_arg(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("report", help="render a stored comparison as Markdown and HTML with plots",
                       description="Render a stored comparison (default: the latest) with its verdict, costs, "
                                   "paired statistics and plots. Without --markdown or --html, prints the "
                                   "Markdown (without plots) to stdout.")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--comparison", type=int, metavar="ID", help="comparison id (printed by compare)")
    which.add_argument("--task-name", metavar="NAME", help="the latest comparison of the task of this name")
    which.add_argument("--task", dest="old_task", metavar="NAME", help=argparse.SUPPRESS)  # the form of 0.1; deprecated
    _store_arg(p)
    p.add_argument("--markdown", metavar="PATH", help="write Markdown here, its plots as PNGs beside it")
    p.add_argument("--html", metavar="PATH", help="write one self-contained HTML page here (plots inlined)")
    _json_arg(p, "report")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("gate", help="check a fine-tuned checkpoint before it ships (exit 0 pass, 1 regression, "
                                    "3 inconclusive, 2 bad input, 4 internal error)",
                       description="Evaluate a checkpoint (LoRA adapter or full model folder, safetensors only) "
                                   "on the task's eval set and forgetting probe, compare it with a baseline "
                                   "using paired statistics, and judge the task's gate rules (flags override "
                                   "them). A rule passes only when its interval shows the checkpoint within the "
                                   "limit. Exit 0 when every rule passes, 1 when one is shown to be broken, 3 "
                                   "when none is but one cannot be decided on these examples, 2 on bad input, "
                                   "4 on an internal error.")
    p.add_argument("task", help="task YAML file (its `gate:` section holds the rules)")
    p.add_argument("checkpoint", help="checkpoint folder: harness adapter, peft adapter or full model")
    base = p.add_mutually_exclusive_group()
    base.add_argument("--baseline", type=int, metavar="RUN_ID",
                      help="a finished run in the store (default baseline: the base model, zero-shot)")
    base.add_argument("--baseline-checkpoint", metavar="PATH", help="another checkpoint, e.g. the one in production")
    p.add_argument("--min-quality", type=float, metavar="X", help="override gate.min_quality")
    p.add_argument("--max-drop", type=float, metavar="X", help="override gate.max_drop (0.05 = 5 points)")
    p.add_argument("--max-forgetting", type=float, metavar="X", help="override gate.max_forgetting")
    p.add_argument("--max-latency-p95", type=float, metavar="MS", help="override gate.max_latency_p95_ms")
    p.add_argument("--limit", type=int, metavar="N", help="score a seeded sample of N eval examples")
    p.add_argument("--junit", metavar="PATH", help="write JUnit XML here, one test case per rule")
    _json_arg(p, "gate result")
    _mlflow_arg(p)
    _store_arg(p)
    _progress_arg(p)
    p.set_defaults(func=_cmd_gate)

    p = sub.add_parser("dashboard", help="serve the Streamlit dashboard over the results store",
                       description="Start the dashboard (comparisons, verdicts, example explorer, gate history) "
                                   "on loopback. It only reads the store; a running compare can keep writing.")
    _store_arg(p)
    p.add_argument("--port", type=int, default=8501, metavar="N", help="port (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s, this machine only)")
    p.set_defaults(func=_cmd_dashboard)
    return parser


def _internal(e: Exception) -> str:
    """An unexpected exception in one line: its type and the first line of its message."""
    first = str(e).strip().splitlines()
    return f"internal error ({type(e).__name__}: {first[0] if first else 'no message'})"


def _log_traceback(argv: list[str] | None) -> Path:
    """Writes the exception being handled, with the command, to a new log file; returns its path."""
    import tempfile
    import traceback
    from datetime import datetime

    from harness.files import cache_dir

    text = f"harness {' '.join(sys.argv[1:] if argv is None else argv)}\n\n{traceback.format_exc()}"
    name = f"harness-error-{datetime.now():%Y%m%d-%H%M%S-%f}.log"
    folder = cache_dir() / "logs"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # the broken environment may be the cache folder itself
        folder = Path(tempfile.gettempdir())
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _old_gate_form(argv: list[str]) -> list[str]:
    """`harness gate CHECKPOINT --task TASK.yaml`, the form of 0.1, rewritten as `harness gate
    TASK.yaml CHECKPOINT` with a warning; read for one release, then gone."""
    if not argv or argv[0] != "gate":
        return argv
    rest = list(argv[1:])
    for i, a in enumerate(rest):
        if a == "--task" and i + 1 < len(rest):
            task = rest[i + 1]
            del rest[i:i + 2]
            break
        if a.startswith("--task="):
            task = a.split("=", 1)[1]
            del rest[i]
            break
    else:
        return argv
    _deprecated("`harness gate CHECKPOINT --task TASK.yaml`", "`harness gate TASK.yaml CHECKPOINT`")
    return ["gate", task, *rest]


def main(argv: list[str] | None = None) -> int:
    argv = _old_gate_form(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    if getattr(args, "limit", None) is not None and args.limit < 1:
        print("error: --limit: must be a positive number", file=sys.stderr)
        return EXIT_BAD_INPUT
    # transformers' advisory warnings (generation flags, cache formats) would bury the table.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # Libraries' deprecation notices to each other (peft -> transformers) are not the user's to act on.
    warnings.filterwarnings("ignore", category=FutureWarning)
    if getattr(args, "no_progress", False):
        os.environ["TQDM_DISABLE"] = "1"  # every bar, ours and the libraries' (Trainer, datasets)
    try:
        return args.func(args)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: finished batches are stored; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or a broken environment: not the regression code, and not a wall of text
        print(f"error: {_internal(e)}; traceback in {_log_traceback(argv)}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
