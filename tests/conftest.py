"""Test set-up: a private Ikomia root, the plugin linked into it, random-weight checkpoints.

Nothing here touches the user's real ``~/Ikomia`` or the network: ``HOME`` points at a temporary
folder before ``ikomia`` is imported, ``IKOMIA_AUTO_COMPLETION=0`` stops it from scanning plugins
and calling the hub, and tasks are created with ``public_hub=False, private_hub=False``.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

PLUGIN_NAME = "infer_segment_anything_2"
REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "images"

_HOME = Path(tempfile.mkdtemp(prefix="sam2-test-home-"))
os.environ["HOME"] = str(_HOME)
os.environ["IKOMIA_AUTO_COMPLETION"] = "0"
# precision=auto is bfloat16 on CPUs with native bfloat16 (engine/model/device.py): the suite's
# float32 parities with Meta hold on every CPU with auto pinned to float32, here and in the child
# processes the tests start; tests/model/test_device.py checks the CPU's own choice.
os.environ["SAM2_CPU_AUTO_PRECISION"] = "float32"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
PLUGINS_DIR = _HOME / "Ikomia" / "Plugins" / "Python"
PLUGINS_DIR.mkdir(parents=True)
(PLUGINS_DIR / PLUGIN_NAME).symlink_to(REPO, target_is_directory=True)
sys.path.insert(0, str(PLUGINS_DIR))
# Imported now, from the link: in a checkout whose folder name is not a Python name
# ("wt-defects", GitHub's "infer_segment_anything_2-main"), pytest later puts the checkout itself
# first on sys.path (its __init__.py makes it a package root), where the module
# infer_segment_anything_2.py would shadow the package.
import infer_segment_anything_2  # noqa: E402,F401

import socket  # noqa: E402

import torch  # noqa: E402

_real_getaddrinfo = socket.getaddrinfo


def _loopback_only_getaddrinfo(host, *args, **kwargs):
    """Host names other than the loopback do not resolve, as on an offline machine: no test can
    reach the internet, whatever it calls."""
    if host not in ("127.0.0.1", "localhost", "::1", None):
        raise socket.gaierror(socket.EAI_NONAME, f"no internet in tests ({host})")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only_getaddrinfo

torch.set_num_threads(max(1, os.cpu_count() or 1))


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Models with random weights
# ---------------------------------------------------------------------------------------------
_CKPT_DIR = Path(tempfile.mkdtemp(prefix="sam2-test-ckpt-"))
_CHECKPOINTS: dict = {}


def random_checkpoint(model_name: str = "sam2.1_hiera_tiny", seed: int = 0) -> Path:
    """A checkpoint of ``model_name`` with random weights (fixed ``seed``), built from the sam2
    package's real config and saved in Meta's format (``{"model": state_dict}``)."""
    key = (model_name, seed)
    if key not in _CHECKPOINTS:
        from infer_segment_anything_2.engine.model.loader import build_model
        from infer_segment_anything_2.engine.model.table import get_model_spec

        torch.manual_seed(seed)
        model = build_model(get_model_spec(model_name), None)
        path = _CKPT_DIR / f"{model_name}-seed{seed}.pt"
        torch.save({"model": model.state_dict()}, path)
        _CHECKPOINTS[key] = path
    return _CHECKPOINTS[key]


def present_checkpoint_path(model_name: str = "sam2.1_hiera_tiny", seed: int = 0,
                            raise_by: float = 20.0) -> Path:
    """:func:`random_checkpoint` with the object-score head's last bias raised by ``raise_by``:
    SAM 2 then finds every object present (random weights often score objects absent, and
    their logits become -1024 on both sides of a comparison, which any comparison passes)."""
    key = (model_name, seed, "present", raise_by)
    if key not in _CHECKPOINTS:
        state = torch.load(random_checkpoint(model_name, seed), weights_only=True)
        state["model"]["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += raise_by
        path = _CKPT_DIR / f"{model_name}-seed{seed}-present.pt"
        torch.save(state, path)
        _CHECKPOINTS[key] = path
    return _CHECKPOINTS[key]


@pytest.fixture(scope="session")
def present_checkpoint() -> Path:
    """SAM 2.1 tiny, random weights (seed 0), objects always scored present."""
    return present_checkpoint_path()


@pytest.fixture(scope="session")
def present_model(present_checkpoint):
    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec

    return build_model(get_model_spec("sam2.1_hiera_tiny"), present_checkpoint)


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """SAM 2.1 tiny, random weights, seed 0."""
    return random_checkpoint("sam2.1_hiera_tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """Our loader's model for :func:`tiny_checkpoint` (eval, CPU, post-processing on)."""
    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec

    return build_model(get_model_spec("sam2.1_hiera_tiny"), tiny_checkpoint)


@pytest.fixture(scope="session")
def standin_model(tiny_checkpoint):
    """SAM 2.1 tiny (random weights, seed 0) whose prompt encoder, mask decoder and image
    encoder are the stand-ins of ``tests/standin.py`` (known discs); ``model.standin_decoder``
    counts the decoder's calls and prompts (tests read differences, never absolute counts).
    Built once for the session: the tests that use it read it and copy it, never change it."""
    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec

    from standin import install

    model = build_model(get_model_spec("sam2.1_hiera_tiny"), tiny_checkpoint)
    model.standin_decoder = install(model)
    return model


@pytest.fixture(scope="session")
def meta_tiny_model(tiny_checkpoint):
    """Meta's own ``build_sam2`` on the same checkpoint: the reference."""
    from sam2.build_sam import build_sam2

    return build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", str(tiny_checkpoint), device="cpu")


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def synthetic_image(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """A deterministic HWC RGB uint8 picture: gradient background, discs and rectangles."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1),
                    np.full_like(xx, 96)], axis=2).astype(np.uint8)
    for _ in range(6):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.circle(img, center, int(rng.integers(8, max(9, min(height, width) // 4))), color, -1)
        else:
            x1, y1 = int(rng.integers(0, width - 8)), int(rng.integers(0, height - 8))
            cv2.rectangle(img, (x1, y1), (x1 + int(rng.integers(8, width // 3)),
                                          y1 + int(rng.integers(8, height // 3))), color, -1)
    return img


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    return synthetic_image()


@pytest.fixture(scope="session")
def image_path(tmp_path_factory, image) -> Path:
    """The synthetic image saved as a PNG (RGB on disk), for ``wf.run_on(path=...)``."""
    import cv2

    path = tmp_path_factory.mktemp("img") / "shapes.png"
    cv2.imwrite(str(path), image[:, :, ::-1])
    return path


# ---------------------------------------------------------------------------------------------
# Ikomia
# ---------------------------------------------------------------------------------------------
def make_task(**params):
    """A Workflow with our task (auto-connected), parameters set; returns ``(wf, task)``."""
    from ikomia.dataprocess.workflow import Workflow

    wf = Workflow()
    task = wf.add_task(name=PLUGIN_NAME, auto_connect=True, public_hub=False, private_hub=False)
    if params:
        task.set_parameters({k: str(v) for k, v in params.items()})
    return wf, task


@pytest.fixture
def tiny_task(tiny_checkpoint):
    """Workflow + task on the random tiny checkpoint."""
    return make_task(model_name="sam2.1_hiera_tiny", model_weight_file=tiny_checkpoint)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def needs_shared_images():
    return pytest.mark.skipif(not SHARED_IMAGES.is_dir(),
                              reason="../shared/images is absent (only in the developers' tree)")


# ---------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ray_instance():
    """A local Ray instance on 2 CPUs, started once for the session (Ray is slow to start) and
    shared by the image and video Ray tests (``tests/dataset``)."""
    ray = pytest.importorskip("ray")  # requirements-ray.txt, installed by requirements-test.txt
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
