"""``annotate.py`` as a user runs it (a script), with SAM 2 built at ``SAM2_TEST_IMAGE_SIZE``
(tests only: the resume test kills this process and runs it again)."""
import importlib.util
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PLUGIN = "infer_segment_anything_2"

if __name__ == "__main__":
    spec = importlib.util.spec_from_file_location(PLUGIN, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    sys.modules[PLUGIN] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[PLUGIN])
    sys.path.insert(0, str(HERE))
    from video_run_helpers import small_model_config

    from infer_segment_anything_2.annotate import main

    with small_model_config(int(os.environ["SAM2_TEST_IMAGE_SIZE"])):
        sys.exit(main(sys.argv[1:]))
