"""What the views share: text shown verbatim, and the store's timestamps as dates."""

from __future__ import annotations

import re
from datetime import datetime


def md(text: object) -> str:
    """Text shown as Markdown verbatim: task names and reasons contain `$`, `_` and brackets, which
    Streamlit would otherwise render as LaTeX, emphasis or links."""
    return re.sub(r"([\\`*_{}\[\]<>()#+\-.!|$~])", r"\\\1", str(text))


def when(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts)
