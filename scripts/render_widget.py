"""Render the Ikomia Studio widget offscreen to a PNG (the README's screenshot).

    .venv/bin/python scripts/render_widget.py [--out docs/widget.png] [--width 440]

Nothing touches the real ~/Ikomia: HOME is a temporary folder in which this checkout is linked
as the plugin, as in the tests. The widget shows its defaults with an example point prompt, and
every section expanded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "infer_segment_anything_2"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "widget.png")
    parser.add_argument("--width", type=int, default=440)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="sam2-render-"))
    try:
        os.environ["HOME"] = str(home)
        os.environ["IKOMIA_AUTO_COMPLETION"] = "0"
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        plugins = home / "Ikomia" / "Plugins" / "Python"
        plugins.mkdir(parents=True)
        (plugins / PLUGIN).symlink_to(REPO, target_is_directory=True)
        sys.path.insert(0, str(plugins))

        import ikomia  # noqa: F401  (before PyQt6: one Qt, ikomia's)
        from PyQt6.QtWidgets import QApplication, QScrollArea

        app = QApplication(sys.argv[:1])
        from infer_segment_anything_2.infer_segment_anything_2_widget import \
            InferSegmentAnything2WidgetFactory

        widget = InferSegmentAnything2WidgetFactory().create(None)
        widget.controls["input_point"].setText("[[500,375],[620,410]]")
        widget.controls["input_point_label"].setText("[1,0]")
        for section in widget.sections.values():
            section.set_expanded(True)
        top = widget.qwidget()
        top.resize(args.width, 200)
        top.show()  # offscreen platform: nothing appears; layouts and scroll ranges update
        app.processEvents()
        # Ikomia puts our layout in a scroll area above its Apply button: grow until all fits.
        scroll = top.findChild(QScrollArea)
        for _ in range(20):
            extra = scroll.verticalScrollBar().maximum() if scroll is not None else 0
            if extra <= 0:
                break
            top.resize(args.width, top.height() + extra)
            app.processEvents()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if not top.grab().save(str(args.out), "PNG", 0):  # 0: smallest PNG
            print(f"could not write {args.out}", file=sys.stderr)
            return 1
        print(f"{args.out} ({top.width()}x{top.height()})")
        return 0
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
