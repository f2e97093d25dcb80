"""The `harness` command. Only argparse is imported up front: `harness --help` stays instant and
each command imports what it needs when it runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.errors import HarnessError


def _strategy_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one strategy, e.g. zero_shot,few_shot")
    return names


def _cmd_compare(args) -> int:
    from harness.compare import compare
    from harness.report import print_table

    report = compare(args.task, strategies=args.strategies, limit=args.limit, store_path=args.store,
                     force=args.force, progress=not args.no_progress)
    print_table(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"report written to {args.json}")
    print(f"stored as comparison {report['comparison_id']} in {args.store}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from harness.store import DEFAULT_PATH

    parser = argparse.ArgumentParser(
        prog="harness",
        description="Is fine-tuning worth it? Run one task through zero-shot, few-shot, RAG and LoRA, "
                    "measure quality, latency and cost, and compare.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compare", help="run a task through its strategies and print the comparison",
                       description="Run the task's strategies on its eval set and print quality (with 95%% "
                                   "bootstrap intervals), latency, throughput and token counts. Finished "
                                   "runs are reused from the store; interrupted ones resume.")
    p.add_argument("task", help="task YAML file (see the README's task reference)")
    p.add_argument("--strategies", type=_strategy_list, metavar="A,B",
                   help="comma-separated subset of strategies (default: those in the task file)")
    p.add_argument("--limit", type=int, metavar="N", help="score a seeded sample of N eval examples")
    p.add_argument("--json", metavar="PATH", help="also write the machine-readable report here")
    p.add_argument("--store", default=os.environ.get("HARNESS_STORE", DEFAULT_PATH), metavar="PATH",
                   help="SQLite results store (default: %(default)s; env HARNESS_STORE)")
    p.add_argument("--force", action="store_true", help="recompute runs already finished in the store")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "limit", None) is not None and args.limit < 1:
        print("error: --limit: must be a positive number", file=sys.stderr)
        return 2
    # transformers' advisory warnings (generation flags, cache formats) would bury the table.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        return args.func(args)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished batches are stored; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
