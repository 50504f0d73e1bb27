"""`make demo`: the specification's first example (automatic masks) on one image.

Writes to ``--out``: ``input.png`` (the image used), ``image_with_mask.png`` (the overlay of
``algo.get_image_with_mask()``) and one JSON file per output (``output_<i>_<type>.json``).
Without ``--image`` it uses a picture the project draws itself (shapes on a gradient).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("IKOMIA_AUTO_COMPLETION", "0")


def own_picture(height: int = 480, width: int = 640) -> np.ndarray:
    """An RGB uint8 picture made here: a few flat shapes on a soft gradient."""
    import cv2

    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([150 + xx * 60 // width, 170 + yy * 50 // height,
                    np.full_like(xx, 200)], axis=2).astype(np.uint8)
    cv2.circle(img, (170, 250), 110, (220, 60, 50), -1)
    cv2.rectangle(img, (330, 90), (580, 300), (40, 120, 200), -1)
    cv2.ellipse(img, (450, 390), (140, 55), 15, 0, 360, (60, 170, 80), -1)
    cv2.circle(img, (170, 250), 40, (250, 220, 70), -1)
    return img


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default="", help="image file (default: the project's own)")
    parser.add_argument("--model-name", default="", help="model_name (default: the plugin's)")
    parser.add_argument("--model-weight-file", default="", help="local checkpoint to use")
    parser.add_argument("--out", default="outputs", help="output folder")
    args = parser.parse_args(argv)

    import cv2
    from ikomia.dataprocess.workflow import Workflow

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.image:
        image_path = Path(args.image)
        if not image_path.is_file():
            print(f"demo: image {image_path} does not exist", file=sys.stderr)
            return 2
    else:
        image_path = out / "input.png"
        cv2.imwrite(str(image_path), own_picture()[:, :, ::-1])

    wf = Workflow()
    algo = wf.add_task(name="infer_segment_anything_2", auto_connect=True,
                       public_hub=False, private_hub=False)
    params = {}
    if args.model_name:
        params["model_name"] = args.model_name
    if args.model_weight_file:
        params["model_weight_file"] = args.model_weight_file
    if params:
        algo.set_parameters(params)
    print(f"demo: automatic masks on {image_path} with {algo.get_parameters()['model_name']}")
    try:
        wf.run_on(path=str(image_path.resolve()))
    except RuntimeError as exc:
        message = str(exc).split(":   File ", 1)[0]
        print(f"\ndemo: the run failed:\n{message}", file=sys.stderr)
        return 2

    overlay = algo.get_image_with_mask()
    cv2.imwrite(str(out / "image_with_mask.png"), overlay[:, :, ::-1])
    for i, output in enumerate(algo.get_outputs()):
        path = out / f"output_{i}_{type(output).__name__}.json"
        path.write_text(json.dumps(json.loads(output.to_json()), indent=1))
    count = algo.get_output(4).get_object_count()
    print(f"demo: {count} masks; wrote {out / 'image_with_mask.png'} and the JSON outputs to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
