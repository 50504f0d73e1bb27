"""Write the documentation's model and parameter tables from the engine's tables.

``python scripts/readme_tables.py`` rewrites the blocks between ``<!-- models:begin -->`` /
``<!-- models:end -->`` and ``<!-- parameters:begin -->`` / ``<!-- parameters:end -->``
wherever they are in README.md and docs/*.md (each table at least once); ``--check`` exits 1
when a file is out of date (tests/test_readme.py runs it).
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TABLES = ("models", "parameters")


def doc_files() -> list:
    """README.md, then the pages of docs/ in name order."""
    return [README, *sorted((REPO / "docs").glob("*.md"))]


def _load_engine():
    """Import ``engine`` as a package without importing the Ikomia plugin around it."""
    if "sam2_plugin_engine" in sys.modules:
        return sys.modules["sam2_plugin_engine"]
    spec = importlib.util.spec_from_file_location(
        "sam2_plugin_engine", REPO / "engine" / "__init__.py",
        submodule_search_locations=[str(REPO / "engine")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["sam2_plugin_engine"] = module
    spec.loader.exec_module(module)
    return module


def models_table() -> str:
    _load_engine()
    from sam2_plugin_engine.model.table import DEFAULT_MODEL, MODELS

    rows = ["| model_name | parameters | download | config in the sam2 package |",
            "|---|---|---|---|"]
    for m in MODELS.values():
        name = f"`{m.name}`" + (" (default)" if m.name == DEFAULT_MODEL else "")
        rows.append(f"| {name} | {m.params_m} M | [{m.size / 1e6:.0f} MB]({m.url}) | "
                    f"`{m.config}` |")
    return "\n".join(rows)


def parameters_table() -> str:
    _load_engine()
    from sam2_plugin_engine.parameters import PARAMETERS

    kinds = {"bool": "bool", "int": "int", "float": "float", "str": "str", "choice": "str",
             "prompt": "str"}
    rows = ["| parameter | type | default | meaning | accepted values |", "|---|---|---|---|---|"]
    group = None
    for p in PARAMETERS.values():
        if p.group != group:
            group = p.group
            rows.append(f"| **{group}** | | | | |")
        default = "CUDA available" if callable(p.default) else repr(p.default_value()) \
            if p.kind in ("str", "prompt", "choice") else str(p.default_value())
        if p.key == "crop_overlap_ratio":
            default = "512/1500"
        accepted = "see the model table" if p.key == "model_name" else p.expected()
        rows.append(f"| `{p.key}` | {kinds[p.kind]} | {default} | {p.help} | {accepted} |")
    return "\n".join(rows)


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- {name}:begin -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)


def render(text: str) -> tuple:
    """``text`` with its table blocks rewritten, and the names of the blocks it has."""
    found = []
    for name, table in (("models", models_table()), ("parameters", parameters_table())):
        pattern = _pattern(name)
        if pattern.search(text):
            found.append(name)
            text = pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text)
    return text, found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    stale, seen = [], set()
    for path in doc_files():
        current = path.read_text()
        wanted, found = render(current)
        seen.update(found)
        if wanted != current:
            stale.append(path)
            if not args.check:
                path.write_text(wanted)
    missing = [n for n in TABLES if n not in seen]
    if missing:
        print("no <!-- NAME:begin --> ... <!-- NAME:end --> block in README.md or docs/*.md for: "
              + ", ".join(missing))
        return 1
    if args.check and stale:
        print(", ".join(str(p.relative_to(REPO)) for p in stale)
              + ": tables out of date: run python scripts/readme_tables.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
