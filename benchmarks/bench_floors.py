"""How far each step of our mask decoder is from its floor: its matrix products alone, at the speed
this machine gives those products.

For the CPU's formulation (float32, 4 prompts per call, as automatic mode calls it), the script
times per prompt:
- the transformer (both layers, to the factored image tokens and their statistics,
  ``engine/decoder/lowrank.py``) and the IoU read-out (the final attention of the IoU token and the IoU head): every prompt pays them;
- the upscaling of a passing prompt (the final attention of its three mask tokens, the
  hypernetworks, the two transposed convolutions (the first read from the factors) and the hypernetwork product, pixels put back in
  raster order for its three candidates).
Each step's floor is the sum of its products' times, each product timed alone with the same
shapes and batch (``torch.bmm`` / ``addmm``, inputs in place, best of several runs): what the step
would cost if everything that is not a product were free. Shapes are the tiny model's (heads,
tokens, 4096 image tokens, 256 channels); the weights are random (speed does not depend on them).

Usage: ``python benchmarks/bench_floors.py [--model sam2.1_hiera_tiny] [--prompts 64]``
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_automatic import _import_engine  # noqa: E402

BATCH = 4  # prompts per decoder call on the CPU (engine/automatic/generator.py)


def best_ms(fn: Callable[[], object], repeat: int = 5, number: int = 3) -> float:
    """Best of ``repeat`` averages over ``number`` calls, in milliseconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times) * 1e3


def product_floor(shapes: List[Tuple[int, int, int, int]]) -> Tuple[float, float]:
    """Time ``torch.bmm`` of each ``(batch, m, k, n)`` alone; returns (ms, GFLOP) summed."""
    total_ms, flop = 0.0, 0.0
    for b, m, k, n in shapes:
        a, w = torch.randn(b, m, k), torch.randn(b, k, n)
        out = torch.empty(b, m, n)
        total_ms += best_ms(lambda: torch.bmm(a, w, out=out))
        flop += 2.0 * b * m * k * n
    return total_ms, flop / 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    parser.add_argument("--prompts", type=int, default=64, help="prompts timed per step")
    args = parser.parse_args(argv)
    _import_engine()
    from infer_segment_anything_2.engine.decoder.point_decoder import PointDecoder
    from infer_segment_anything_2.engine.model.loader import build_model
    from infer_segment_anything_2.engine.model.table import get_model_spec

    torch.manual_seed(0)
    model = build_model(get_model_spec(args.model), None)
    dec = model.sam_mask_decoder
    c = dec.transformer_dim
    image_embed = torch.randn(1, c, 64, 64)
    high_res = [torch.randn(1, c // 8, 256, 256), torch.randn(1, c // 4, 128, 128)]
    decoder = PointDecoder(model, image_embed, high_res)
    assert decoder.exact, "the CPU's float32 formulation is measured"
    points = torch.rand(args.prompts, 1, 2) * model.image_size
    labels = torch.ones(args.prompts, 1, dtype=torch.int32)
    with torch.no_grad():
        sparse, _ = model.sam_prompt_encoder(points=(points, labels), boxes=None, masks=None)
    calls = [sparse[i:i + BATCH] for i in range(0, args.prompts, BATCH)]

    def upscale(q, tokens, image):
        return decoder.upscale(decoder.upscale_input(image), decoder.hyper(q, tokens, image))

    with torch.no_grad():
        state = [decoder.transformer(s) for s in calls]
        per_prompt = 1.0 / args.prompts
        measured: Dict[str, float] = {
            "transformer": best_ms(lambda: [decoder.transformer(s) for s in calls], 3, 1),
            "IoU read-out": best_ms(lambda: [decoder.iou(*st) for st in state], 3, 1),
            "upscaling (a passing prompt)": best_ms(lambda: [upscale(*st) for st in state], 3, 1),
        }
    measured = {k: v * per_prompt for k, v in measured.items()}

    t = dec.transformer
    n = image_embed.shape[-1] * image_embed.shape[-2]
    tokens = sparse.shape[1] + decoder.out_tokens.shape[0]
    h = t.layers[0].cross_attn_image_to_token.num_heads
    d = t.layers[0].cross_attn_image_to_token.internal_dim // h
    ht = h * tokens  # heads x tokens: the factors' width
    c1 = dec.output_upscaling[0].out_channels
    c2 = dec.output_upscaling[3].out_channels
    per_head = BATCH * h  # products by head, one image-wide operand per head

    def final(rows: int):
        """The final attention of ``rows`` tokens from the factors (engine/decoder/lowrank.py)."""
        return ([(per_head, rows, d, n)] * 2 + [(BATCH, h * rows, ht, n)] * 2
                + [(per_head, rows, n, d)] + [(BATCH, h * rows, n, ht)] * 2)

    shapes = {
        # the factored formulation (engine/decoder/lowrank.py, engine/decoder/factored.py): layer 0's
        # image-to-token scores; x1's statistics; layer 1's token-to-image scores and values,
        # its image-to-token scores; x2's statistics. 16-wide products by head against
        # per-image operands, 64-wide (heads x tokens) ones against the attention weights
        "transformer": ([(per_head, tokens, d, n)]
                        + [(per_head, tokens, d, n), (BATCH, ht, ht, n)]
                        + [(per_head, tokens, d, n)] * 2 + [(BATCH, ht, ht, n)]
                        + [(per_head, tokens, n, d), (BATCH, ht, n, ht)]
                        + [(per_head, tokens, d, n)] * 2 + [(BATCH, ht, ht, n)]
                        + [(per_head, tokens, d, n)] * 2 + [(BATCH, ht, ht, n)] * 3),
        # the IoU token's final attention
        "IoU read-out": final(1),
        # the three mask tokens' final attention, the first convolution read from the factors
        # (rank 2 x heads x tokens + 3), the second, the hypernetwork product
        "upscaling (a passing prompt)": final(3) + [(BATCH, n, 2 * ht + 3, 4 * c1),
                                                    (BATCH, 4 * n, c1, 4 * c2),
                                                    (BATCH, 16 * n, c2, 3)],
    }
    print(f"{args.model}, {args.prompts} prompts in calls of {BATCH}, float32, "
          f"{torch.get_num_threads()} threads; per prompt:")
    print("| step | ours | floor: its products alone | GFLOP | product speed | ours / floor |")
    print("|---|---|---|---|---|---|")
    for step, shape in shapes.items():
        floor_ms, gflop = product_floor(shape)
        floor_ms, gflop = floor_ms / BATCH, gflop / BATCH
        print(f"| {step} | {measured[step]:.2f} ms | {floor_ms:.2f} ms | {gflop:.3f} | "
              f"{gflop / floor_ms * 1e3:.0f} GFLOP/s | {measured[step] / floor_ms:.2f} |")
    a_big, b_big = torch.randn(2048, 2048), torch.randn(2048, 2048)
    big = best_ms(lambda: torch.mm(a_big, b_big), 3, 1)
    print(f"large square product (2048^3): {2 * 2048 ** 3 / big / 1e6:.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
