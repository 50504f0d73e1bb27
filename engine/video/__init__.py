"""Video tracking: SAM 2's memory streamed one frame per call.

Entry points: :class:`VideoSession` with its :class:`VideoOptions` (the rules of a workflow's
video: which prompts apply on a frame, detections matched to the objects, automatic masks seeding
new objects, bounds, what starts a new video, object ids and names) over :class:`VideoTracker`
(the model's own ``track_step`` and memory encoder in Meta's order, objects batched where their
memories line up, memory bounded to what the model reads). Pieces: :mod:`.frames` (a frame's
results and inputs), :mod:`.memory` (each object's memory, batches), :mod:`.attention` (the
memory attention with exact shortcuts) and :mod:`.conditioning` (the memories it reads, in place
of the model's own around ``track_step``), :mod:`.matching`
(detections checked and matched), :mod:`.seeding` (which automatic masks are new objects).

May import: :mod:`engine.model`, :mod:`engine.image`, :mod:`engine.cancel`.
"""
from .frames import TrackedFrame
from .matching import Detections, clean_detections
from .session import VideoOptions, VideoSession
from .tracker import NO_OBJ_SCORE, VideoTracker

__all__ = ["TrackedFrame", "Detections", "clean_detections", "VideoOptions", "VideoSession",
           "NO_OBJ_SCORE", "VideoTracker"]
