"""Stop requests: a run polls ``should_stop`` and ends with :class:`GenerationCancelled`.

Both modes use it: automatic mode between decoder chunks, both modes between the image encoder's
blocks (the longest step on a CPU).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

StopCheck = Callable[[], bool]


class GenerationCancelled(RuntimeError):
    """Raised when ``should_stop()`` became true during a run; nothing is returned."""


@contextlib.contextmanager
def stoppable_encoder(model, should_stop: Optional[StopCheck]) -> Iterator[None]:
    """Within this context, a stop request interrupts ``model``'s image encoder between two of
    its trunk blocks by raising :class:`GenerationCancelled` (no-op when ``should_stop`` is None).
    """
    if should_stop is None:
        yield
        return

    def check(_module, _inputs):
        if should_stop():
            raise GenerationCancelled("stopped during image encoding")

    blocks = getattr(getattr(getattr(model, "image_encoder", None), "trunk", None), "blocks", None)
    handles = [b.register_forward_pre_hook(check) for b in (blocks or [])]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
