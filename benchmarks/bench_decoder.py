"""Automatic mode's mask decoder per point: ours (``engine.decoder.point_decoder.PointDecoder``) against the
model's own ``sam_mask_decoder`` as Meta's generator calls it (batches of ``points_per_batch``
single-point prompts, the image embedding repeated, multimask output), in one process.

Cases, by the share of candidates above the IoU threshold (set at a quantile of the model's own
predicted IoUs):
  pass 50%   half of the candidates, nearly every prompt has one (what trained weights do)
  pass 90%   90% of the candidates
  none pass  no candidate (what random weights give at the default threshold): ours runs the
             transformer and the IoU head only; a bound
  all pass   every prompt upscaled, as the model's decoder always does; a bound

Meta's decoder does the same work in both cases. Outputs are checked to agree (logits of the
kept candidates and their IoU) before anything is timed. Random weights (seed 0) on the
embedding of a real photograph (``../shared/images``, else a synthetic picture).

Usage (from the repository root):
  .venv/bin/python benchmarks/bench_decoder.py [--model sam2.1_hiera_tiny] [--points 256]
      [--threads N] [--repeats 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_automatic import IMAGES, _import_engine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--image", default="truck")
    ap.add_argument("--points", type=int, default=256)
    ap.add_argument("--points-per-batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many passes")
    ap.add_argument("--chunks", type=int, nargs="+", default=None,
                    help="prompts per PointDecoder call to compare (default: the engine's)")
    args = ap.parse_args()
    _import_engine()
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from infer_segment_anything_2.engine.automatic.generator import POINT_DECODER_CHUNK
    from infer_segment_anything_2.engine.decoder.point_decoder import PointDecoder
    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec
    from infer_segment_anything_2.engine.image.predictor import encode_image

    torch.manual_seed(0)
    model = build_model(get_model_spec(args.model), None)
    path = IMAGES / f"{args.image}.jpg"
    if path.is_file():
        import cv2

        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    else:
        image = (np.random.RandomState(0).rand(600, 900, 3) * 255).astype(np.uint8)
    gen = torch.Generator().manual_seed(0)
    coords = torch.rand(args.points, 1, 2, generator=gen) * model.image_size
    labels = torch.ones(args.points, 1, dtype=torch.int)
    prompt_encoder = model.sam_prompt_encoder
    with torch.no_grad():
        emb = encode_image(model, image)
        ours = PointDecoder(model, emb.image_embed, emb.high_res_feats)

    def meta():
        out = []
        for s in range(0, args.points, args.points_per_batch):
            c, lab = coords[s:s + args.points_per_batch], labels[s:s + args.points_per_batch]
            sparse, dense = prompt_encoder(points=(c, lab), boxes=None, masks=None)
            logits, iou, _, _ = model.sam_mask_decoder(
                image_embeddings=emb.image_embed, image_pe=prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=True, repeat_image=True, high_res_features=emb.high_res_feats)
            out.append((logits.flatten(0, 1), iou.flatten()))
        return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])

    chunks = args.chunks or [POINT_DECODER_CHUNK]

    def point_decoder(thresh, chunk=POINT_DECODER_CHUNK):
        def run():
            index, logits, iou = [], [], []
            for s in range(0, args.points, chunk):
                sparse, _ = prompt_encoder(points=(coords[s:s + chunk], labels[s:s + chunk]),
                                           boxes=None, masks=None)
                i, lg, io = ours.decode_above(sparse, thresh)
                index.append(i + 3 * s)
                logits.append(lg)
                iou.append(io)
            return torch.cat(index), torch.cat(logits), torch.cat(iou)
        return run

    with torch.no_grad():
        ref_logits, ref_iou = meta()
        cases = {"pass 50%": float(torch.quantile(ref_iou, 0.5)),
                 "pass 90%": float(torch.quantile(ref_iou, 0.1)),
                 "none pass": float(ref_iou.max()) + 1.0, "all pass": float(ref_iou.min()) - 1.0}
        for (name, thresh), chunk in ((c, k) for c in cases.items() for k in chunks):
            index, logits, iou = point_decoder(thresh, chunk)()
            assert torch.equal(index, torch.nonzero(ref_iou > thresh)[:, 0]), name
            if len(index):
                assert (iou - ref_iou[index]).abs().max().item() <= 1e-5, name
                err = (logits - ref_logits[index]).abs().max().item()
                assert err <= 1e-4 * max(1.0, ref_logits.abs().max().item()), (name, err)

        def best(fn) -> float:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return min(times) / args.points * 1e3

        meta_ms = best(meta)
        print(f"{args.model}, {args.points} points, torch threads {torch.get_num_threads()}, "
              f"best of {args.repeats}; outputs agree")
        print(f"  Meta (model decoder, batches of {args.points_per_batch}): {meta_ms:6.1f} ms/point")
        for (name, thresh), chunk in ((c, k) for c in cases.items() for k in chunks):
            ms = best(point_decoder(thresh, chunk))
            upscaled = len(torch.unique(torch.nonzero(ref_iou > thresh)[:, 0] // 3))
            print(f"  ours, {name:9s} (chunks of {chunk}):   {ms:6.1f} ms/point"
                  f"   Meta/ours = {meta_ms / ms:4.1f}x   ({upscaled} of {args.points} prompts "
                  f"upscaled)")


if __name__ == "__main__":
    main()
