"""Time the model on this machine and print JSON.

* ``detect`` seconds per image (batch of one, after a warm-up call) for ResNet-50 and ResNet-101 at
  1024x1024 ("square" mode) and 1024x2048 ("pad64" mode, the Cityscapes frame as is); COCO-sized heads
  (81 classes), random weights, Matterport's default inference settings;
* one training step's seconds at 512x512 (batch 1, all layers trainable) for both backbones.

Usage: ``python benchmarks/bench_model.py [--repeats 3] [--backbones resnet50 resnet101]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from timing import median_seconds  # noqa: E402  (benchmarks/timing.py)

from mrcnn import model as modellib  # noqa: E402
from mrcnn.config import Config  # noqa: E402
from mrcnn.data.generator import DataGenerator  # noqa: E402
from mrcnn.shapes import ShapesDataset  # noqa: E402


class BenchConfig(Config):
    NAME = "bench"
    NUM_CLASSES = 81
    IMAGES_PER_GPU = 1


def bench_detect(backbone, repeats, logs):
    rng = np.random.default_rng(0)
    results = {}
    for label, shape, overrides in [
        ("1024x1024", (1024, 1024, 3), {"IMAGE_RESIZE_MODE": "square"}),
        ("1024x2048", (1024, 2048, 3), {"IMAGE_RESIZE_MODE": "pad64", "IMAGE_MIN_DIM": 1024}),
    ]:
        config = BenchConfig(BACKBONE=backbone, **overrides)
        model = modellib.MaskRCNN("inference", config, logs)
        image = rng.integers(0, 255, shape, dtype=np.uint8)
        results[label] = median_seconds(lambda m=model, i=image: m.detect([i]), repeats)
        keras.backend.clear_session()
    return results


def bench_train_step(backbone, repeats, logs):
    config = BenchConfig(BACKBONE=backbone, IMAGE_MIN_DIM=512, IMAGE_MAX_DIM=512, NUM_CLASSES=4)
    dataset = ShapesDataset()
    dataset.load_shapes(4, 512, 512, seed=0)
    dataset.prepare()
    model = modellib.MaskRCNN("training", config, logs, seed=0)
    model.set_trainable("all", verbose=0)
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    inputs, _ = DataGenerator(dataset, config, seed=0)[0]
    seconds = median_seconds(lambda: model.keras_model.train_on_batch(tuple(inputs)), repeats)
    keras.backend.clear_session()
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "resnet101"])
    args = parser.parse_args(argv)
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "keras": keras.__version__, "backend": keras.backend.backend()},
              "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as logs:
        for backbone in args.backbones:
            report[backbone] = {
                "detect_s_per_image": bench_detect(backbone, args.repeats, logs),
                "train_step_s_512x512_batch1": bench_train_step(backbone, args.repeats, logs),
            }
            print(json.dumps({backbone: report[backbone]}), file=sys.stderr)
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
