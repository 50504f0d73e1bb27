"""Prompt-mode prediction with a cached image embedding.

The image is encoded once (:meth:`PromptPredictor.set_image`); any number of prompts are then
decoded against the cached embedding. The cache key is the image content (a BLAKE2 digest of the
pixels), its shape, the resize factor and the precision, so a new image or ``input_size_percent``
encodes again while a prompt change does not; the last few images stay cached. Decoding follows Meta's ``SAM2ImagePredictor`` step by step (same
transforms, prompt encoder and mask decoder), so masks are equal on the same weights.
"""
from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..model.device import CPU, DeviceChoice
from .prompts import Prompt
from .results import Segmentation

logger = logging.getLogger(__name__)

OBJECTS_PER_BATCH = 64  # prompt objects (boxes) decoded at once; bounds decoder memory
# Embeddings kept for images revisited. One embedding has a fixed size whatever the image and the
# model: 256x64x64 + 32x256x256 + 64x128x128 values = 16 MiB in float32 (10 MiB under bf16/fp16
# autocast), so 8 images hold at most 128 MiB (RAM, or VRAM on a GPU): under a tenth of the
# smallest model's run (1.6 GiB peak), and enough for a Studio user going back and forth in a
# folder or a loop alternating a few images.
CACHED_IMAGES = 8


@dataclass
class ImageEmbedding:
    """Backbone features of one image, as SAM 2's mask decoder takes them.

    Attributes:
        image_embed: ``(1, 256, 64, 64)`` lowest-resolution features (with ``no_mem_embed`` added).
        high_res_feats: ``[(1, 32, 256, 256), (1, 64, 128, 128)]`` for the decoder's upsampling.
        orig_hw: ``(H, W)`` of the original image (before ``input_size_percent``).
        input_hw: ``(h, w)`` of the image actually encoded.
        choice: the device and precision it was computed in (decoding uses the same).

    Under bfloat16 / float16 autocast the high-resolution maps are in that dtype, as the model
    computes them; ``image_embed`` is float32 (``no_mem_embed`` is added in float32).
    """

    image_embed: torch.Tensor
    high_res_feats: List[torch.Tensor]
    orig_hw: Tuple[int, int]
    input_hw: Tuple[int, int]
    choice: DeviceChoice = CPU


def model_device(model) -> torch.device:
    """The device of ``model``'s parameters."""
    return next(model.parameters()).device


def image_key(image: np.ndarray, scale: float, choice: DeviceChoice) -> bytes:
    """Content key of an image for the embedding cache: pixels, shape, resize factor, device
    and precision."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16)
    digest.update(repr((image.shape, image.dtype.str, float(scale), choice.key())).encode())
    return digest.digest()


def resize_for_input(image: np.ndarray, scale: float) -> np.ndarray:
    """Downscale an HWC image by ``scale`` (<= 1) with bilinear interpolation; at least 1x1."""
    if scale >= 1.0:
        return image
    import cv2

    h, w = image.shape[:2]
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


@torch.no_grad()
def encode_image(model, image: np.ndarray, orig_hw: Optional[Tuple[int, int]] = None,
                 device_choice: Optional[DeviceChoice] = None) -> ImageEmbedding:
    """Run SAM 2's image encoder on an HWC RGB uint8 image (as ``SAM2ImagePredictor.set_image``),
    on the model's device, in ``device_choice``'s precision (default: ``auto``)."""
    from sam2.utils.transforms import SAM2Transforms

    choice = device_choice or DeviceChoice.make(model_device(model))
    transforms = SAM2Transforms(resolution=model.image_size, mask_threshold=0.0,
                                disable_torch_jit=True)
    batch = transforms(image)[None].to(choice.device)
    with choice.compute():
        backbone = model.forward_image(batch)
        _, feats, _, _ = model._prepare_backbone_features(backbone)
    hw = tuple(image.shape[:2])
    return embedding_from_features(model, feats, tuple(orig_hw or hw), hw, choice)


def embedding_from_features(model, feats: List[torch.Tensor], orig_hw: Tuple[int, int],
                            input_hw: Tuple[int, int], choice: DeviceChoice) -> ImageEmbedding:
    """An :class:`ImageEmbedding` of the backbone's flattened features (``(HW, 1, C)`` per level,
    as ``_prepare_backbone_features`` gives them), with ``no_mem_embed`` added as the image
    predictor does: the video mode's frame features serve the automatic mode without a second
    encoding."""
    feats = list(feats)
    if model.directly_add_no_mem_embed:
        feats[-1] = feats[-1] + model.no_mem_embed
    sizes = [(model.image_size // s, model.image_size // s) for s in (4, 8, 16)]
    maps = [f.permute(1, 2, 0).reshape(1, -1, *hw) for f, hw in zip(feats, sizes)]
    return ImageEmbedding(maps[-1], maps[:-1], tuple(orig_hw), tuple(input_hw), choice)


def prompt_tensors(prompt: Prompt, orig_hw: Tuple[int, int], resolution: int,
                   device: torch.device
                   ) -> List[Tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """The objects' prompts as SAM 2's prompt encoder takes them, in sets of equal length.

    Each object is its box as two corner points labelled 2 and 3, then its points
    (:meth:`Prompt.object_prompt`). Objects whose prompts have the same number of points are
    decoded together; objects of other lengths go in other sets, never padded (a padding point
    would change the masks). Coordinates go from original-image pixels to the model's input frame
    (``resolution`` x ``resolution``).

    Returns:
        ``[(objects, coords, labels)]``: ``objects`` ``(b,)`` int64 object indices, ``coords``
        ``(b, P, 2)`` float32 and ``labels`` ``(b, P)`` int32 on ``device``.
    """
    h, w = orig_hw
    norm = np.array([resolution / w, resolution / h], np.float32)
    n_obj = prompt.num_objects
    if prompt.num_groups < 2:  # every object has the same points: one set, built at once
        parts_c, parts_l = [], []
        if len(prompt.boxes):
            parts_c.append(prompt.boxes.reshape(-1, 2, 2))
            parts_l.append(np.tile(np.array([[2, 3]], np.int32), (n_obj, 1)))
        if len(prompt.points):
            parts_c.append(np.broadcast_to(prompt.points, (n_obj, *prompt.points.shape)))
            parts_l.append(np.broadcast_to(prompt.labels, (n_obj, len(prompt.labels))))
        sets = [(np.arange(n_obj), np.concatenate(parts_c, axis=1),
                 np.concatenate(parts_l, axis=1))]
    else:
        per_object = [prompt.object_prompt(i) for i in range(n_obj)]
        lengths = np.array([len(c) for c, _ in per_object])
        sets = []
        for length in np.unique(lengths):
            objects = np.nonzero(lengths == length)[0]
            sets.append((objects, np.stack([per_object[i][0] for i in objects]),
                         np.stack([per_object[i][1] for i in objects])))
    return [(objects, torch.as_tensor(coords * norm, dtype=torch.float32, device=device),
             torch.as_tensor(labels, dtype=torch.int32, device=device))
            for objects, coords, labels in sets]


@torch.no_grad()
def decode(model, emb: ImageEmbedding, coords: torch.Tensor, labels: torch.Tensor,
           multimask: bool, mask_input: Optional[torch.Tensor] = None
           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Prompt encoder + mask decoder for B objects (``mask_input``: optional ``(B, 1, 256, 256)``
    low-resolution logits prompting each object, as in SAM 2's mask-to-mask refinement), in the
    embedding's device and precision (the model's modules under autocast, as Meta's predictor).

    Returns:
        low-resolution logits ``(B, C, 256, 256)`` float32 and predicted IoU ``(B, C)`` float32,
        C = 3 with ``multimask`` else 1.
    """
    with emb.choice.compute():
        sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None,
                                                 masks=mask_input)
        logits, iou, _, _ = model.sam_mask_decoder(
            image_embeddings=emb.image_embed,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=coords.shape[0] > 1,
            high_res_features=emb.high_res_feats,
        )
    return logits.float(), iou.float()


def upscale_logits(logits: torch.Tensor, out_hw: Tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of ``(B, C, h, w)`` logits to ``out_hw``."""
    return F.interpolate(logits, out_hw, mode="bilinear", align_corners=False)


class PromptPredictor:
    """Encode an image once, then answer prompts against the cached embedding.

    The embeddings of the last :data:`CACHED_IMAGES` images are kept (least recently used out),
    so going back to an image seen a moment ago (Studio's image list, a Python loop alternating
    images) does not encode it again.

    Args:
        model: a built SAM 2 model (``SAM2Base``), in eval mode, on its device.
    """

    def __init__(self, model):
        self.model = model
        self._embedding: Optional[ImageEmbedding] = None
        self._cache: "OrderedDict[bytes, ImageEmbedding]" = OrderedDict()
        self.encode_count = 0  # images encoded so far (the cache's misses)

    @property
    def embedding(self) -> Optional[ImageEmbedding]:
        """The current image's embedding (None before ``set_image`` or after a stopped one)."""
        return self._embedding

    @property
    def cached_images(self) -> int:
        return len(self._cache)

    def set_image(self, image: np.ndarray, scale: float = 1.0,
                  device_choice: Optional[DeviceChoice] = None) -> bool:
        """Make ``image`` (HWC RGB uint8) current; encode it unless its embedding is cached.

        Args:
            image: the original image.
            scale: ``input_size_percent / 100``; the encoder sees the image resized by it.
            device_choice: the precision to encode and decode in (default: ``auto`` on the
                model's device); part of the cache key.
        Returns:
            True when the image was encoded, False when the cache answered.
        """
        choice = device_choice or DeviceChoice.make(model_device(self.model))
        key = image_key(image, scale, choice)
        if key in self._cache:
            self._cache.move_to_end(key)
            self._embedding = self._cache[key]
            return False
        self._embedding = None  # an interrupted encoding leaves no current image
        small = resize_for_input(image, scale)
        embedding = encode_image(self.model, small, image.shape[:2], choice)
        self._cache[key] = self._embedding = embedding
        while len(self._cache) > CACHED_IMAGES:
            self._cache.popitem(last=False)
        self.encode_count += 1
        return True

    def reset(self) -> None:
        """Forget every cached embedding."""
        self._embedding = None
        self._cache.clear()

    def predict(self, prompt: Prompt, multimask: bool = False,
                mask_threshold: float = 0.0) -> Segmentation:
        """Masks for ``prompt`` (original-image pixels) on the current image.

        Objects as :class:`Prompt` defines them (one per point group, else one per box, or one for
        points alone); with ``multimask`` each object gets three
        candidates sorted by predicted IoU, best first. Masks are at the original image size,
        obtained by upscaling the logits and then thresholding at ``mask_threshold``.

        Returns:
            a :class:`Segmentation` with K = objects x candidates masks, ordered object-major.
        """
        if self._embedding is None:
            raise RuntimeError("set_image() must be called before predict()")
        if prompt.is_empty:
            h, w = self._embedding.orig_hw
            return Segmentation.empty(h, w)
        emb = self._embedding
        n_obj = prompt.num_objects
        mask_arr = score_arr = None  # (B, C, H, W) bool, (B, C) float32, in object order
        for objects, coords, labels in prompt_tensors(prompt, emb.orig_hw, self.model.image_size,
                                                      emb.choice.device):
            for start in range(0, len(objects), OBJECTS_PER_BATCH):
                stop = start + OBJECTS_PER_BATCH
                logits, iou = decode(self.model, emb, coords[start:stop], labels[start:stop],
                                     multimask)
                order = torch.argsort(iou, dim=1, descending=True, stable=True)
                iou = torch.gather(iou, 1, order)
                logits = torch.gather(logits, 1, order[:, :, None, None].expand_as(logits))
                masks = (upscale_logits(logits, emb.orig_hw) > mask_threshold).cpu().numpy()
                if mask_arr is None:
                    mask_arr = np.zeros((n_obj, *masks.shape[1:]), bool)
                    score_arr = np.zeros((n_obj, masks.shape[1]), np.float32)
                mask_arr[objects[start:stop]] = masks
                score_arr[objects[start:stop]] = iou.cpu().numpy()
        b, c = score_arr.shape
        return Segmentation.from_masks(
            mask_arr.reshape(b * c, *emb.orig_hw), score_arr.reshape(-1),
            object_index=np.repeat(np.arange(b, dtype=np.int32), c),
            candidate=np.tile(np.arange(c, dtype=np.int32), b))
