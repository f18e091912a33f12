"""A/B of detect()'s two forms around the same network, in one process, interleaved; prints JSON.

"keras": the mold and unmold Keras models (mrcnn.export) around the network, as detect() ran on TensorFlow;
"numpy": Matterport's NumPy molding (mold_inputs) and unmolding (mrcnn.postprocess) around it, as detect() ran
on JAX and PyTorch. ResNet-50, 81 classes, random weights, DETECTION_MIN_CONFIDENCE 0 (100 detections with
masks), square mode at 1024, for a 1024x2048 and a 480x640 image.

Usage: ``python benchmarks/ab_detect_paths.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mrcnn import model as modellib  # noqa: E402
from mrcnn.config import Config  # noqa: E402


class BenchConfig(Config):
    NAME = "bench"
    NUM_CLASSES = 81
    BACKBONE = "resnet50"
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as logs:
        model = modellib.MaskRCNN("inference", BenchConfig(), logs)
    paths = {"keras": model.detect, "numpy": model._detect_numpy}
    report = {"cpus": os.cpu_count(), "repeats": args.repeats, "runs": []}
    rng = np.random.default_rng(0)
    for shape in ((1024, 2048, 3), (480, 640, 3)):
        image = rng.integers(0, 255, shape, dtype=np.uint8)
        results = {name: fn([image]) for name, fn in paths.items()}  # warm-up (tracing)
        times = {name: [] for name in paths}
        for _ in range(args.repeats):
            for name, fn in paths.items():
                start = time.perf_counter()
                results[name] = fn([image])
                times[name].append(time.perf_counter() - start)
        a, b = results["keras"][0], results["numpy"][0]
        run = {"image": list(shape), "detections": len(a["class_ids"]),
               **{f"{name}_s": round(statistics.median(t), 3) for name, t in times.items()},
               "same_class_ids": bool(np.array_equal(a["class_ids"], b["class_ids"])),
               "max_box_px": int(np.abs(a["rois"] - b["rois"]).max()) if len(a["rois"]) else 0,
               "mask_pixels_differing": float(np.mean(a["masks"] != b["masks"]))}
        run["numpy_over_keras"] = round(run["numpy_s"] / run["keras_s"], 3)
        print(json.dumps(run), file=sys.stderr)
        report["runs"].append(run)
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
