"""The docs that are generated from the code are up to date, and the README stays a README."""

from __future__ import annotations

from pathlib import Path

from harness.docs import OUT, reference

ROOT = Path(__file__).resolve().parent.parent


def test_task_reference_is_up_to_date():
    assert OUT.read_text(encoding="utf-8") == reference(), "docs/task-reference.md is out of date: run " \
                                                           "`python -m harness.docs`"


def test_every_task_field_is_in_the_reference():
    from harness.config import Task

    text = OUT.read_text(encoding="utf-8")
    assert all(f"| `{name}` |" in text for name in Task.model_fields)


def test_the_readme_is_short_and_its_links_resolve():
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    for target in re.findall(r"\]\(((?:docs/)[^)#]+)", readme):
        assert (ROOT / target).is_file(), target
