"""Rendering a comparison report for people: the terminal table."""

from __future__ import annotations

import sys


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def print_table(report: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    # Piped output (CI logs, tests) gets a fixed width rather than rich's 80 columns, which
    # would wrap the strategy names.
    console = console or Console(width=None if sys.stdout.isatty() else 140)
    metric = report["strategies"][0]["quality"]["metric"] if report["strategies"] else "quality"
    table = Table(title=f"{report['task']} · {report['model']} · {report['n_examples']} eval examples",
                  title_justify="left")
    table.add_column("strategy")
    table.add_column(f"{metric} % [95% CI]", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("ex/s", justify="right")
    table.add_column("prompt tok", justify="right")
    table.add_column("output tok", justify="right")
    table.add_column("peak MB", justify="right")
    table.add_column("", style="dim")
    for s in report["strategies"]:
        q = s["quality"]
        table.add_row(
            s["name"],
            f"{_pct(q['value'])} [{_pct(q['ci_low'])}, {_pct(q['ci_high'])}]",
            f"{s['latency_ms']['p50']:.0f}",
            f"{s['latency_ms']['p95']:.0f}",
            f"{s['throughput_eps']:.2f}" if s["throughput_eps"] else "-",
            f"{s['tokens']['prompt_mean']:.0f}",
            f"{s['tokens']['output_mean']:.1f}",
            f"{s['peak_memory_mb']:.0f}",
            "from store" if s.get("reused") else "",
        )
    console.print(table)
