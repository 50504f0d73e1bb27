"""One loaded model and its caches, reused across runs."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .automatic import AutomaticParams, ProgressCallback, generate
from .cancel import StopCheck, stoppable_encoder
from .model.device import DeviceChoice, select_device
from .model.loader import build_model
from .model.table import get_model_spec
from .image.predictor import PromptPredictor, embedding_from_features
from .image.prompts import Prompt
from .image.results import Segmentation
from .video import Detections, VideoOptions, VideoSession
from .model.weights import CheckpointError, ensure_checkpoint, weight_file_problem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelKey:
    """What decides which weights are loaded: a change of any field reloads the model."""

    model_name: str
    model_weight_file: str = ""
    cuda: bool = False
    apply_postprocessing: bool = True


def resolve_checkpoint(key: ModelKey, weights_dir: Path) -> Path:
    """The checkpoint to load: ``model_weight_file`` when set, else the verified download."""
    spec = get_model_spec(key.model_name)
    if key.model_weight_file:
        problem = weight_file_problem(key.model_weight_file, spec)
        if problem:
            raise CheckpointError(problem)
        return Path(key.model_weight_file).expanduser()
    return ensure_checkpoint(spec, weights_dir)


class Sam2Session:
    """Keeps one model loaded, plus its prompt predictor (and so the image embedding cache).

    Args:
        weights_dir: where downloaded checkpoints live (the plugin's ``weights/``).
    """

    def __init__(self, weights_dir: Path):
        self.weights_dir = Path(weights_dir)
        self.key: Optional[ModelKey] = None
        self.model = None
        self.device = torch.device("cpu")
        self.predictor: Optional[PromptPredictor] = None
        self.video = VideoSession()
        self.load_count = 0

    def load(self, key: ModelKey) -> bool:
        """Load the model for ``key`` unless it is already loaded; True when it (re)loaded."""
        if key == self.key and self.model is not None:
            return False
        self.unload()
        spec = get_model_spec(key.model_name)
        checkpoint = resolve_checkpoint(key, self.weights_dir)
        device = select_device(key.cuda)
        logger.info("Loading %s from %s on %s", spec.name, checkpoint, device)
        self.model = build_model(spec, checkpoint, device, key.apply_postprocessing)
        self.device = device
        self.predictor = PromptPredictor(self.model)
        self.key = key
        self.load_count += 1
        return True

    def unload(self) -> None:
        self.model, self.predictor, self.key = None, None, None
        self.video.reset()

    def choice(self, precision: str = "auto") -> DeviceChoice:
        """The loaded model's device with ``precision`` resolved on it."""
        return DeviceChoice.make(self.device, precision)

    def set_image(self, image: np.ndarray, scale: float = 1.0,
                  should_stop: Optional[StopCheck] = None, precision: str = "auto") -> bool:
        """Encode ``image`` (HWC RGB uint8) for both modes unless the cached embedding matches
        (same pixels, ``scale`` and ``precision``).

        The encoder is the longest step of a run on CPU, so ``should_stop`` is polled between
        its blocks: when it turns true, :class:`engine.cancel.GenerationCancelled` is raised
        and the cache is left empty. Returns True when the image was encoded.
        """
        with stoppable_encoder(self.model, should_stop):
            return self.predictor.set_image(image, scale, self.choice(precision))

    def segment_prompt(self, image: np.ndarray, prompt: Prompt, scale: float = 1.0,
                       multimask: bool = False, mask_threshold: float = 0.0,
                       should_stop: Optional[StopCheck] = None,
                       precision: str = "auto") -> Segmentation:
        """Prompt mode on an HWC RGB uint8 image (embedding cached across calls).

        ``should_stop`` can interrupt the image encoding (see :meth:`set_image`).
        """
        self.set_image(image, scale, should_stop, precision)
        return self.predictor.predict(prompt, multimask, mask_threshold)

    def segment_automatic(self, image: np.ndarray, params: AutomaticParams, scale: float = 1.0,
                          on_batch: Optional[ProgressCallback] = None,
                          should_stop: Optional[StopCheck] = None,
                          precision: str = "auto") -> Segmentation:
        """Automatic mode on an HWC RGB uint8 image (:func:`engine.automatic.generator.generate`).

        ``on_batch(done, total)`` follows the decoder batches; when ``should_stop()`` turns true,
        during the image encoding or the decoding, the run ends with
        :class:`engine.cancel.GenerationCancelled`.
        """
        self.set_image(image, scale, should_stop, precision)  # cached: shared with prompt mode
        return generate(self.model, image, params, scale, self.choice(precision),
                        on_batch=on_batch, should_stop=should_stop,
                        embedding=self.predictor.embedding)

    def track_video(self, image: np.ndarray, prompt: Prompt, names: Sequence[str] = (),
                    mask_threshold: float = 0.0, should_stop: Optional[StopCheck] = None,
                    precision: str = "auto", detections: Optional[Detections] = None,
                    options: VideoOptions = VideoOptions(),
                    automatic: Optional[AutomaticParams] = None) -> Segmentation:
        """Video mode: ``image`` is the next frame of the video (see
        :mod:`engine.video.session` for what its prompts, detections and seeding do and what
        starts a new video). ``automatic``: the automatic mode's parameters for seeding
        (``options.seed_every``).

        ``should_stop`` interrupts the image encoder and is polled between batches of objects;
        a stopped frame leaves the video as it was (the next frame continues it)."""
        choice = self.choice(precision)

        def seed(frame: np.ndarray, staged) -> Segmentation:
            """The automatic mode on the frame's own features (no second encoding)."""
            feats, _, _ = self.video.tracker.features(staged, 1)
            emb = embedding_from_features(self.model, feats, frame.shape[:2], frame.shape[:2],
                                          choice)
            return generate(self.model, frame, automatic, 1.0, choice, should_stop=should_stop,
                            embedding=emb)

        seeder = seed if automatic is not None else None
        with stoppable_encoder(self.model, should_stop):
            return self.video.frame(self.model, choice, image, prompt, names, detections,
                                    options, mask_threshold, should_stop, seeder)
