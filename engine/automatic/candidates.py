"""The candidates that passed the filters of one crop (or of all crops after merging), as the
generator keeps them until the final masks: low-resolution logits, scores, boxes, crop."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class Kept:
    """Candidates that passed the filters of one crop (or of all crops after merging)."""

    logits: torch.Tensor      # (n, 256, 256) float32 low-resolution logits
    iou: torch.Tensor         # (n,) predicted IoU
    stability: torch.Tensor   # (n,) float32
    boxes: torch.Tensor       # (n, 4) int64 inclusive XYXY, image frame (of the model input)
    crop: torch.Tensor        # (n,) int64 index into the crop list

    @classmethod
    def cat(cls, parts: Sequence["Kept"]) -> "Kept":
        if len(parts) == 1:
            return parts[0]
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in
                     ("logits", "iou", "stability", "boxes", "crop")))

    def select(self, index: torch.Tensor) -> "Kept":
        return Kept(self.logits[index], self.iou[index], self.stability[index],
                    self.boxes[index], self.crop[index])

    def __len__(self) -> int:
        return len(self.iou)
