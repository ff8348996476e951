"""docs/cascadb.md's first example runs and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "cascadb.md"


def test_the_example_prints_what_the_page_says() -> None:
    block = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[0]
    expected = re.findall(r"^print\(.*\)  # (.*)$", block, re.M)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, str(DOC), "exec"), {})  # the page's own example
    assert printed.getvalue().splitlines() == expected
    assert len(expected) == 2
