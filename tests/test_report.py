"""`harness compare` ends with the verdict, and `harness report` renders the stored comparison as
Markdown and self-contained HTML with plots. One real compare on the tiny model fills the store."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.compare import compare
from harness.store import Store
from tests.conftest import TOPICS, topic_rows, write_jsonl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_model_dir):
    """A store holding one comparison of zero_shot and few_shot with a few-shot learning curve;
    returns (store path, the report JSON, what compare printed)."""
    root = tmp_path_factory.mktemp("report")
    write_jsonl(root / "data" / "train.jsonl", topic_rows(4))
    write_jsonl(root / "data" / "eval.jsonl", topic_rows(4, offset=10))
    task = {
        "name": "tiny_topics", "type": "classification", "model": str(tiny_model_dir),
        "data": {"train": "data/train.jsonl", "eval": "data/eval.jsonl"},
        "fields": {"id": "id", "input": "text", "target": "label"},
        "prompt": {"system": "answer with one word", "template": "article : {{ text }} topic ?"},
        "labels": list(TOPICS), "strategies": {"zero_shot": {}, "few_shot": {"k": 3}},
        "limits": {"batch_size": 4},
        "cost": {"serving": "api", "api_usd_per_mtok_input": 0.15, "api_usd_per_mtok_output": 0.6},
        "learning_curves": [{"strategy": "few_shot", "param": "k", "values": [0, 3]}],
    }
    (root / "task.yaml").write_text(yaml.safe_dump(task, sort_keys=False), encoding="utf-8")
    store, out = root / "store.sqlite", root / "report.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["compare", str(root / "task.yaml"), "--store", str(store), "--json", str(out),
                     "--no-progress"]) == 0
    return store, json.loads(out.read_text()), printed.getvalue()


def test_compare_ends_with_a_verdict_whose_reasons_are_numbers(compared):
    _, report, printed = compared
    verdict = printed[printed.index("verdict:"):].splitlines()
    assert verdict[0] == f"verdict: {report['recommendation']['verdict']}"
    assert (report["recommendation"]["kind"], report["recommendation"]["cause"]) == ("cannot_decide", "no_fine_tuning")
    reasons = [line for line in verdict if line.startswith("  - ")]
    assert reasons and all(re.search(r"\d", r) for r in reasons)
    assert any("not run: fine-tuning" in line for line in verdict)


def test_report_json_has_costs_comparisons_and_curves(compared):
    _, report, _ = compared
    zero, few = report["strategies"]
    for s in (zero, few):
        c = s["cost"]
        assert c["basis"] == "api" and c["per_request_usd"] > 0 and c["monthly_requests"] == 100_000
        assert c["per_request_usd"] == pytest.approx(s["tokens"]["prompt_mean"] * 0.15 / 1e6)
    # Three demonstrations make every API request longer, so dearer. They are the same for every
    # query: served from the prefix cache, they add no FLOPs to a request.
    assert few["cost"]["per_request_usd"] > zero["cost"]["per_request_usd"]
    demo_tokens = few["tokens"]["prompt_mean"] - zero["tokens"]["prompt_mean"]
    assert demo_tokens > 20
    assert few["tokens"]["cached_mean"] - zero["tokens"]["cached_mean"] == pytest.approx(demo_tokens, abs=2)
    assert few["cost"]["per_request_flops"] == pytest.approx(zero["cost"]["per_request_flops"], rel=0.05)
    (pair,) = report["comparisons"]["pairs"]
    assert (pair["a"], pair["b"], pair["n"], pair["test"]) == ("zero_shot", "few_shot", 12, "mcnemar_exact")
    rec = report["recommendation"]
    assert set(rec) >= {"verdict", "best_strategy", "reasons", "missing"}
    # The best arm is one that does the task: a degenerate one (the tiny model may answer one label
    # whatever the article) is never named.
    fair = {"zero_shot", "few_shot"} - {f["arm"] for f in rec["findings"] if f["type"] == "degenerate"}
    assert rec["best_strategy"] in fair if fair else rec["best_strategy"] is None
    (curve,) = report["learning_curves"]
    assert [p["value"] for p in curve["points"]] == [0, 3] and not curve["fine_tuning"]
    assert [p["labelled_examples"] for p in curve["points"]] == [0, 3]
    # The k=3 point is the compared few_shot run itself, reused from the store.
    assert curve["points"][1]["run_id"] == few["run_id"] and curve["points"][1]["reused"]


def test_a_run_of_other_arms_runs_no_learning_curve(compared, tmp_path):
    # --strategies zero_shot leaves the few_shot curve out: its points are few_shot runs.
    store, _, _ = compared
    task = store.parent / "task.yaml"
    report = compare(task, strategies=["zero_shot"], store_path=tmp_path / "store.sqlite", progress=False)
    assert [s.name for s in report.strategies] == ["zero_shot"] and report.learning_curves == []
    report = compare(task, strategies=["zero_shot", "few_shot"], store_path=store, progress=False)
    assert [c.strategy for c in report.learning_curves] == ["few_shot"]


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.external = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs["src"])
        linked = [v for k, v in attrs.items() if k in ("src", "href")]
        if tag in ("script", "link") or any(str(v).startswith("http") for v in linked):
            self.external.append(tag)


def test_report_writes_markdown_and_self_contained_html(compared, tmp_path, capsys):
    store, report, _ = compared
    md, html = tmp_path / "out" / "report.md", tmp_path / "out" / "report.html"
    assert main(["report", "--store", str(store), "--markdown", str(md), "--html", str(html)]) == 0

    page = _Images()
    page.feed(html.read_text(encoding="utf-8"))
    assert len(page.srcs) == 2 and page.external == []
    for src in page.srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.removeprefix("data:image/png;base64,")).startswith(PNG_MAGIC)
    text = html.read_text(encoding="utf-8")
    assert f"<h2>Verdict: {report['recommendation']['verdict']}</h2>" in text
    assert "<table>" in text

    markdown = md.read_text(encoding="utf-8")
    assert f"## Verdict: {report['recommendation']['verdict']}" in markdown
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert links == ["report-pareto.png", "report-learning_curves.png"]
    assert all((md.parent / link).read_bytes().startswith(PNG_MAGIC) for link in links)
    for reason in report["recommendation"]["reasons"]:
        assert f"- {reason}" in markdown


def test_report_prints_markdown_by_default_and_selects_comparisons(compared, capsys):
    store, report, _ = compared
    assert main(["report", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# tiny_topics") and "## Paired comparisons (accuracy)" in out and "![" not in out
    assert main(["report", "--store", str(store), "--task-name", "tiny_topics"]) == 0
    assert main(["report", "--store", str(store), "--comparison", "1"]) == 0
    assert capsys.readouterr().out.count("## Verdict") == 2
    # The flag before 0.2 still works for one release, with one warning line.
    assert main(["report", "--store", str(store), "--task", "tiny_topics"]) == 0
    out = capsys.readouterr()
    assert "## Verdict" in out.out and out.err.strip() == ("warning: `harness report --task NAME` is deprecated and "
                                                           "goes in the next release; use `--task-name NAME` (--task "
                                                           "is a task file everywhere else)")


def test_report_json_to_stdout_is_the_report_alone(compared, capsys):
    import json

    store, report, _ = compared
    assert main(["report", "--store", str(store), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "tiny_topics"


@pytest.mark.parametrize("args, fragments", [
    (["--comparison", "99"], ["--comparison", "no comparison 99", "1 (tiny_topics)"]),
    (["--task-name", "nope"], ["--task-name", "no comparison of task 'nope'"]),
])
def test_report_of_a_missing_comparison(compared, capsys, args, fragments):
    store, _, _ = compared
    assert main(["report", "--store", str(store), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(f in err for f in fragments), err


def test_report_without_a_store_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "none.sqlite"
    assert main(["report", "--store", str(missing)]) == 2
    assert "no results store" in capsys.readouterr().err and not missing.exists()


def test_report_of_a_comparison_stored_before_verdicts(tmp_path, capsys):
    store = Store(tmp_path / "old.sqlite")
    store.save_comparison("old_task", {"task": "old_task", "strategies": []})
    store.close()
    assert main(["report", "--store", str(tmp_path / "old.sqlite")]) == 2
    assert "stored before verdicts existed" in capsys.readouterr().err


def test_report_help_imports_nothing_heavy():
    code = ("import sys, contextlib, io\nfrom harness.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['report', '--help'])\n"
            "heavy = [m for m in ('torch', 'scipy', 'matplotlib', 'markdown_it') if m in sys.modules]\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


# --- where fine-tuning overtakes in-context learning ---------------------------------------------

def curve(strategy: str, fine_tuning: bool, points: list[tuple[int, float, float]]):
    """A learning curve of (labelled examples, accuracy, half-width of its interval) points, each
    point's parameter value being its number of labelled examples."""
    from harness.results import Curve

    def point(labelled, value, half):
        m = {"value": value, "ci_low": value - half, "ci_high": value + half}
        return {"value": labelled, "labelled_examples": labelled, "run_id": 1, "n_examples": 300,
                "quality": {"metric": "accuracy", **m}, "metrics": {"accuracy": m}}

    return Curve(strategy=strategy, param="k" if not fine_tuning else "n", fine_tuning=fine_tuning,
                 points=[point(*p) for p in points])


# The best in-context point is k=4: 71% [66%, 76%], above k=8.
FEW_SHOT = [(0, 0.50, 0.05), (4, 0.71, 0.05), (8, 0.70, 0.05)]
BEST_ICL = "the best in-context result (few_shot k=4: 71.0% accuracy [95% CI 66.0%, 76.0%])"


@pytest.mark.parametrize("lora, at, clear, text", [
    # Above on the estimate at 250 (74% > 71%), but the interval clears 76% only at 500.
    ([(250, 0.74, 0.03), (500, 0.80, 0.03), (1000, 0.85, 0.03)], 500, True,
     f"lora overtakes {BEST_ICL} at 500 labelled examples (n=500: 80.0% accuracy [95% CI 77.0%, 83.0%]), "
     f"its 95% interval entirely above."),
    ([(250, 0.74, 0.05), (1000, 0.78, 0.05)], 250, False,
     f"lora overtakes {BEST_ICL} at 250 labelled examples (n=250: 74.0% accuracy [95% CI 69.0%, 79.0%]) on point "
     f"estimate only: the 95% intervals overlap at every number of labelled examples tried."),
    ([(250, 0.60, 0.05), (1000, 0.71, 0.05)], None, None,
     f"Fine-tuning never overtakes {BEST_ICL}, up to 1,000 labelled examples."),
])
def test_overtake_is_the_first_point_above_the_best_in_context_point(lora, at, clear, text):
    from harness.curves import overtake, overtake_finding
    from harness.verdict.text import overtake_sentence

    curves = [curve("few_shot", False, FEW_SHOT), curve("lora", True, lora)]
    over = overtake(curves, "accuracy")
    found = over and (over.curve.strategy, over.labelled_examples, over.clear)
    assert found == (None if at is None else ("lora", at, clear))
    if over:
        assert (over.best_curve.strategy, over.best.value) == ("few_shot", 4)
    assert overtake_sentence(overtake_finding(curves, "accuracy")) == text


def test_overtake_takes_the_fewest_examples_over_every_fine_tuning_curve():
    from harness.curves import overtake

    curves = [curve("lora", True, [(250, 0.74, 0.03), (500, 0.80, 0.03)]), curve("few_shot", False, FEW_SHOT),
              curve("full", True, [(100, 0.60, 0.03), (200, 0.90, 0.03)])]
    over = overtake(curves, "accuracy")
    assert (over.curve.strategy, over.labelled_examples, over.clear) == ("full", 200, True)
    assert over.label() == "full overtakes in-context learning at 200"


@pytest.mark.parametrize("curves, text", [
    ([curve("lora", True, [(250, 0.9, 0.01)])],
     "No in-context learning curve, so nothing shows where fine-tuning overtakes in-context learning."),
    ([curve("few_shot", False, FEW_SHOT)],
     "No fine-tuning learning curve, so nothing shows where fine-tuning overtakes in-context learning."),
    ([], "No fine-tuning learning curve, so nothing shows where fine-tuning overtakes in-context learning."),
])
def test_no_overtake_without_both_kinds_of_curve(curves, text):
    from harness.curves import overtake, overtake_finding
    from harness.verdict.text import overtake_sentence

    assert overtake(curves, "accuracy") is None
    assert overtake_sentence(overtake_finding(curves, "accuracy")) == text


def test_learning_curve_plot_marks_the_overtake(compared):
    from harness.curves import overtake, plotted_curves
    from harness.report import figures
    from harness.results import ComparisonReport

    _, report, _ = compared
    report = ComparisonReport.model_validate(report)
    report.learning_curves.append(curve("lora", True, [(4, 0.0, 0.0), (12, 1.0, 0.0)]))
    assert overtake(plotted_curves(report.learning_curves), "accuracy").labelled_examples == 12
    assert figures(report)["learning_curves"].startswith(PNG_MAGIC)


def test_default_table_fits_120_columns_one_line_per_arm_and_wide_shows_every_column(compared):
    from rich.console import Console

    from harness.format import strategy_columns
    from harness.report import print_table
    from harness.results import ComparisonReport

    report = ComparisonReport.model_validate(compared[1])
    row = report.strategies[0]
    # The demo's longest rows: a fair baseline the harness added, and a fine-tuned arm.
    lora = row.model_copy(update={"name": "lora", "made_of": "lora", "prepare_s": 321.0, "wall_s": 400.2})
    added = row.model_copy(update={"name": "raw_calibrated", "made_of": "base, raw prompt, calibrated",
                                   "added_by_harness": True, "reused": True})
    demos = row.model_copy(update={"name": "few_shot", "made_of": "base + 4 balanced demos"})
    report = report.model_copy(update={"strategies": [row, added, demos, lora]})
    for wide, width in ((False, 120), (True, 400)):
        out = io.StringIO()
        print_table(report, Console(file=out, width=width), wide=wide)
        lines = out.getvalue().splitlines()
        header = next(line for line in lines if "made of" in line)
        body = lines[lines.index(header) + 2:]
        for arm in report.strategies:
            # One line per arm, every cell whole.
            (line,) = [b for b in body if b.split() and b.split()[0] == arm.name]
            assert arm.made_of in line and len(line) <= width
        shown = sum(c.header in header for c in strategy_columns(report.comparisons.metric))
        assert shown == (len(strategy_columns(report.comparisons.metric)) if wide else 7)
    assert "time: zero_shot" in out.getvalue() and "lora 400 s (321 preparing)" in out.getvalue()
    assert "from the store: raw_calibrated" in out.getvalue()
