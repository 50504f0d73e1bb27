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


_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_LINK = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""")
_CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks, with code spans blanked."""
    lines, fenced = [], False
    for line in text.split("\n"):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(_CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: its rendered text (links and images by their text,
    code spans by their content, emphasis marks dropped) lowercased, every character but letters,
    digits, ``_``, ``-`` and spaces removed, spaces to ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes for a Markdown text's headings (a repeated slug gets ``-1``,
    ``-2``, ... in order)."""
    seen: dict[str, int] = {}
    out = set()
    lines, fenced = [], False
    for line in text.split("\n"):  # headings keep their code spans (their text is in the slug)
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    for line in lines:
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(text: str) -> list[str]:
    """Every link target of a Markdown text: ``[text](target)``, ``![alt](target)`` and HTML
    ``href`` / ``src`` attributes, outside code."""
    found = []
    for line in prose_lines(text):
        found += _MD_LINK.findall(line) + _HTML_LINK.findall(line)
    return found


def broken_links(path: Path) -> list[str]:
    """The relative links of ``path`` whose file or anchor does not exist, as ``target (why)``.
    Links with a scheme (``https:``, ``mailto:``) are not followed."""
    text = path.read_text()
    out = []
    for target in links(text):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            out.append(f"{target} (no file {dest})")
            continue
        if anchor:
            if dest.is_dir() or dest.suffix != ".md":
                out.append(f"{target} (an anchor into a file that is not Markdown)")
            elif anchor not in anchors(dest.read_text()):
                out.append(f"{target} (no heading with anchor #{anchor} in {dest.name})")
    return out
