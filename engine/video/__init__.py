"""Video tracking: SAM 2's memory streamed one frame per call.

Entry points: :class:`VideoSession` (the rules of a workflow's video: which prompts apply on a
frame, what starts a new video, object names) over :class:`VideoTracker` (the model's own
``track_step`` and memory encoder in Meta's order, with memory bounded to what the model reads).

May import: :mod:`engine.model`, :mod:`engine.image`, :mod:`engine.cancel`.
"""
from .session import VideoSession
from .tracker import NO_OBJ_SCORE, TrackedFrame, VideoTracker

__all__ = ["VideoSession", "NO_OBJ_SCORE", "TrackedFrame", "VideoTracker"]
