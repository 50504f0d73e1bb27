"""Automatic seeding in the offline propagation (``engine/dataset/video_new_tracks.py``'s
``automatic_masks``): the seeds read the propagation's own encoding of the frame."""
from __future__ import annotations

import numpy as np

from clips import present_small_model
from infer_segment_anything_2.engine.automatic import AutomaticParams, generate
from infer_segment_anything_2.engine.dataset.video_new_tracks import SeedTracks, automatic_masks
from infer_segment_anything_2.engine.image.predictor import embedding_from_features
from infer_segment_anything_2.engine.model.device import CPU
from infer_segment_anything_2.engine.video.offline import OfflinePropagation
from infer_segment_anything_2.engine.video.tracker import VideoTracker
from test_video_new_tracks import ClipFrames

FRAMES, EVERY = 6, 3  # seeding on frames 0 and 3


def test_seeded_frames_are_encoded_once_and_seeds_read_the_frames_features():
    """SeedTracks with the engine's generator on a 6-frame clip: the image encoder runs exactly as
    often as the propagation encodes frames (the generator encoded each seeded frame once more
    before), and each seed's masks are the automatic masks of the frame's own features, as video
    mode's seeding computes them (``engine/session.py``): Meta's video loader's preparation."""
    model = present_small_model(256)
    calls = []
    hook = model.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    params = AutomaticParams(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    generator, seen = automatic_masks(model, params, CPU), []

    def spy(image, embedding=None):
        assert embedding is not None  # the propagation always hands its encoding over
        masks = generator(image, embedding)
        seen.append((image, masks))
        return masks

    seeds = SeedTracks(spy, every=EVERY, max_tracks=4)
    run = OfflinePropagation(model, CPU, ClipFrames(FRAMES), {}, "both", new_tracks=seeds,
                             fill_hole_area=0)
    results = list(run.run())
    hook.remove()
    assert len(seen) == 2 and len(seen[0][1]) > 0  # seeding on frames 0 and 3, masks found
    assert seeds.categories and any(r.masks.any() for r in results)
    assert len(calls) == run.encodings
    reference = VideoTracker(model, CPU, num_frames=FRAMES)
    for image, masks in seen:
        _, feats, _, _ = model._prepare_backbone_features(reference._backbone(image))
        embedding = embedding_from_features(model, feats, image.shape[:2], image.shape[:2], CPU)
        np.testing.assert_array_equal(masks, generate(model, image, params, 1.0, CPU,
                                                      embedding=embedding).masks)
