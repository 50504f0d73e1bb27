"""The user documentation as the tests read it: README.md (the Ikomia HUB page) and docs/*.md.

``doc_block(marker)`` is the code of the fenced block right after ``<!-- marker:begin -->``,
wherever that marker is (a block may move between the README and a page of docs/; the test
that runs it follows). A marker must be in exactly one file, once.
"""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def doc_files() -> list[Path]:
    """README.md, then the pages of docs/ in name order."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def doc_block(marker: str, lang: str = "python") -> str:
    """The code (without its fences) of the ``lang`` block that follows ``<!-- marker:begin -->``."""
    pattern = re.compile(rf"<!-- {re.escape(marker)}:begin -->\n```{lang}\n(.*?)```", re.S)
    found = [(path, m.group(1)) for path in doc_files()
             for m in pattern.finditer(path.read_text())]
    assert len(found) == 1, (f"<!-- {marker}:begin --> followed by a {lang} block: "
                             f"{len(found)} times in README.md and docs/*.md, expected once "
                             f"({[str(p.relative_to(REPO)) for p, _ in found]})")
    return found[0][1]

