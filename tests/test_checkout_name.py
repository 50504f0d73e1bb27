"""The tests that start processes pass in a checkout whose folder is not a Python name.

GitHub's "Download ZIP" unpacks to ``infer_segment_anything_2-main``; users clone into folders of
any name, with spaces too. The checkout has an ``__init__.py`` at its root, as Ikomia plugins do,
so pytest's module names and ``sys.path`` depend on that folder. This test copies the checkout to
``<tmp>/a folder with spaces/infer_segment_anything_2-main`` and runs there, in a pytest of its
own, tests whose child processes import the plugin: ``multiprocessing``-free children
(``tests/child.py``), the annotation script, the video command line in a subprocess.
(Ray workers import the package by path, ``engine/dataset/ray_runner.py``; their tests were run
in such a folder too, but a Ray start costs ~20 s, too much to repeat here.)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import REPO

NESTED = [
    "tests/model/test_weights.py::test_two_processes_download_once",
    "tests/model/test_weights.py::test_killed_download_leaves_nothing_and_is_cleaned_up",
    "tests/dataset/test_annotate_sources.py::test_the_script_answers_a_missing_folder_in_one_line",
    "tests/dataset/test_video_cli.py::test_resume_after_a_sigkill_mid_video_is_byte_identical",
]
_SKIP = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", "outputs", "*.pt",
                               "gpu_check_out", ".gpu", ".whl")


def test_process_tests_pass_in_a_folder_named_like_githubs_zip(tmp_path):
    checkout = tmp_path / "a folder with spaces" / "infer_segment_anything_2-main"
    shutil.copytree(REPO, checkout, ignore=_SKIP, symlinks=True)
    env = dict(os.environ, IKOMIA_AUTO_COMPLETION="0", QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *NESTED],
                          cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert f"{len(NESTED)} passed" in done.stdout, done.stdout[-3000:]
