"""The README tells the truth about the parameters and models (generated from the engine's tables)."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO
from infer_segment_anything_2.engine.model.table import MODELS
from infer_segment_anything_2.engine.parameters import PARAMETERS


def test_readme_tables_are_current():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "readme_tables.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_names_every_parameter_and_model_and_both_commands():
    text = (REPO / "README.md").read_text()
    for key in PARAMETERS:
        assert f"`{key}`" in text
    for name in MODELS:
        assert f"`{name}`" in text
    assert "make demo" in text and "make test" in text
    assert "make test" in (REPO / ".ci" / "run").read_text()
