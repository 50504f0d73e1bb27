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


def test_slugs_follow_github():
    from docs_text import anchors, slug

    assert slug("Detections as prompts: a detector finds the objects, SAM 2 draws their masks") \
        == "detections-as-prompts-a-detector-finds-the-objects-sam-2-draws-their-masks"
    assert slug("Development: the two commands") == "development-the-two-commands"
    assert slug("Memory of `video_tracking` (CPU, 2,000 frames)") == \
        "memory-of-video_tracking-cpu-2000-frames"
    assert slug("[Link](x.md) and **bold** – dash") == "link-and-bold--dash"
    text = "# Videos\n\n```sh\n# not a heading\n```\n\n## Videos\n\n### Videos\n"
    assert anchors(text) == {"videos", "videos-1", "videos-2"}


def test_every_relative_link_and_anchor_resolves():
    """README.md and docs/*.md: every relative link names an existing file, and every anchor
    (``#...``, in the same page or another) a heading of its page."""
    from docs_text import doc_files, broken_links, links

    pages = doc_files()
    assert len(links(pages[0].read_text())) > 10  # the links are found at all
    broken = {str(p.relative_to(REPO)): broken_links(p) for p in pages}
    assert not any(broken.values()), {k: v for k, v in broken.items() if v}


def test_every_page_of_docs_is_linked_from_the_readme():
    from docs_text import doc_files

    readme = (REPO / "README.md").read_text()
    for page in doc_files()[1:]:
        assert f"(docs/{page.name}" in readme, page.name


def test_readme_stays_a_page_a_hub_reader_takes_in_at_a_glance():
    """The README is the algorithm's page on Ikomia HUB: about 350 lines (issue 30); the rest
    goes to a page of docs/ with one paragraph and one link under "Advanced usage"."""
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= 375, f"README.md has {lines} lines: move the details to a page of docs/"
