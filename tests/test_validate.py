"""`harness validate`: every shipped task is valid, and says what compare would run; after a
compare, the arms it stored read as stored. (Bad input: tests/test_bad_input.py checks validate
says the same line as compare for every fixture.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from tests.conftest import topic_rows
from tests.test_shipped_tasks import TASKS, hosted_models, pointed_at, served  # noqa: F401 (a fixture)


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.stem)
def test_every_shipped_task_validates(path, capsys, tmp_path, request):
    import yaml

    if hosted_models(yaml.safe_load(path.read_text(encoding="utf-8"))):
        path = pointed_at(path, request.getfixturevalue("served")().base_url, tmp_path)
    store = tmp_path / "none.sqlite"
    assert main(["validate", str(path), "--store", str(store)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert ": valid;" in out.splitlines()[0] and "estimate:" in out
    assert "to run" in out and not store.exists()


def test_validate_names_the_stored_arms_and_the_baselines_the_harness_adds(make_task, capsys, tmp_path):
    from harness.compare import compare

    store = tmp_path / "s.sqlite"
    path = make_task()
    compare(path, store_path=store, progress=False, strategies=["zero_shot"])
    before = store.stat().st_mtime_ns
    assert main(["validate", str(path), "--store", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    zero = next(line for line in lines if line.strip().startswith("zero_shot"))
    few = next(line for line in lines if line.strip().startswith("few_shot"))
    assert "stored (run 1)" in zero and "to run" in few
    assert lines[-1].startswith("estimate: 1 of 2 arms to run, 12 predictions, about ")
    assert store.stat().st_mtime_ns == before  # read only

    lora = make_task(strategies={"lora": {"max_steps": 2}}, train=topic_rows(6))
    assert main(["validate", str(lora), "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "trains about 2 steps" in out and "fair baseline the harness adds" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("harness 0.")


def test_compare_help_prints_95_percent(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    assert "95% bootstrap" in " ".join(out.split()) and "%%" not in out


def test_the_old_gate_form_warns_and_still_reads_the_task(capsys, tmp_path):
    rc = main(["gate", str(tmp_path / "adapter"), "--task", str(tmp_path / "nope.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[0].startswith("warning: `harness gate CHECKPOINT --task TASK.yaml` is deprecated")
    assert err[1] == f"error: {tmp_path / 'nope.yaml'}: task file not found"
    assert Path(tmp_path / "adapter").exists() is False
