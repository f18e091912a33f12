"""Time the model on this machine and print JSON.

* ``detect`` seconds per image (batch of one, after a warm-up call) for ResNet-50 and ResNet-101 at
  1024x1024 ("square" mode) and 1024x2048 ("pad64" mode, the Cityscapes frame as is); COCO-sized heads
  (81 classes), random weights, Matterport's default inference settings;
* one training step's seconds at 512x512 (batch 1, all layers trainable) for both backbones.

``--profile`` instead splits a training step at 512x512 and ``detect`` at 1024x1024 by stage of the graph
(backbone+FPN, RPN, proposals, detection targets, ROIAlign, heads, detections, losses, backward, optimizer),
with the data pipeline's time per batch and detect's molding and unmolding beside (benchmarks/stage_profile.py).

``--inference-path`` instead times, in one run with interleaved repeats, ``detect()`` and its parts (NumPy
molding, the network, NumPy unmolding and mask pasting) at 1024x1024 and 1024x2048, with
DETECTION_MIN_CONFIDENCE=0 (all 100 detection slots unmolded and pasted: the most post-processing there can be)
and 0.7 (Matterport's default), and batched detect of 4 same-size images (IMAGES_PER_GPU=4) against 4 single
calls, with the network alone beside.

``--backend jax`` (or ``torch``) runs the detect and training-step timings on that Keras backend (it sets
KERAS_BACKEND before Keras is imported) and adds each first call's seconds (JAX's compilation) and the devices
the backend sees; ``--profile`` and ``--inference-path`` are TensorFlow's.

Usage: ``python benchmarks/bench_model.py [--repeats 3] [--backbones resnet50 resnet101] [--inference-path]
[--profile] [--backend tensorflow|jax|torch]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
BACKENDS = ("tensorflow", "jax", "torch")
for _i, _arg in enumerate(sys.argv):  # Keras reads its backend once, at import: set it before that
    if _arg.startswith("--backend"):
        _value = _arg.partition("=")[2] or (sys.argv[_i + 1] if _i + 1 < len(sys.argv) else "")
        if _value in BACKENDS:
            os.environ["KERAS_BACKEND"] = _value

import keras  # noqa: E402
import numpy as np  # noqa: E402
from timing import median_seconds  # noqa: E402  (benchmarks/timing.py)

from mrcnn import model as modellib  # noqa: E402
from mrcnn.config import Config  # noqa: E402
from mrcnn.data.generator import DataGenerator  # noqa: E402
from mrcnn.postprocess import unmold_detections  # noqa: E402
from mrcnn.shapes import ShapesDataset  # noqa: E402

# The two detect sizes: a square COCO-sized image and a Cityscapes frame as is.
DETECT_SIZES = [
    ("1024x1024", (1024, 1024, 3), {"IMAGE_RESIZE_MODE": "square"}),
    ("1024x2048", (1024, 2048, 3), {"IMAGE_RESIZE_MODE": "pad64", "IMAGE_MIN_DIM": 1024}),
]


class BenchConfig(Config):
    NAME = "bench"
    NUM_CLASSES = 81
    IMAGES_PER_GPU = 1


def bench_detect(backbone, repeats, logs):
    rng = np.random.default_rng(0)
    results = {}
    for label, shape, overrides in DETECT_SIZES:
        config = BenchConfig(BACKBONE=backbone, **overrides)
        model = modellib.MaskRCNN("inference", config, logs)
        image = rng.integers(0, 255, shape, dtype=np.uint8)
        first = {}
        results[label] = median_seconds(lambda m=model, i=image: m.detect([i]), repeats, first=first)
        if keras.backend.backend() != "tensorflow":
            results[f"{label}_first_call_s"] = first["first_call_s"]
        keras.backend.clear_session()
    return results


def _training_setup(backbone, logs, size=512):
    """A compiled training model (all layers, batch 1) on ``size`` x ``size`` shapes, and its data generator."""
    config = BenchConfig(BACKBONE=backbone, IMAGE_MIN_DIM=size, IMAGE_MAX_DIM=size, NUM_CLASSES=4)
    dataset = ShapesDataset()
    dataset.load_shapes(4, size, size, seed=0)
    dataset.prepare()
    model = modellib.MaskRCNN("training", config, logs, seed=0)
    model.set_trainable("all", verbose=0)
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    return model, DataGenerator(dataset, config, seed=0)


def bench_train_step(backbone, repeats, logs):
    model, generator = _training_setup(backbone, logs)
    inputs, _ = generator[0]
    first = {}
    seconds = median_seconds(lambda: model.keras_model.train_on_batch(tuple(inputs)), repeats, first=first)
    keras.backend.clear_session()
    return seconds, first["first_call_s"]


def _interleaved(calls, repeats):
    """{name: median seconds} of several calls timed in turn (after one warm-up call each)."""
    for fn in calls.values():
        fn()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def _inference_stages(model, image, repeats):
    """detect() on one image, and its molding, network and unmolding alone."""
    molded, metas, windows = model.mold_inputs([image])
    outputs = model._predict(molded, metas)
    stages = _interleaved({
        "detect": lambda: model.detect([image]),
        "molding": lambda: model.mold_inputs([image]),
        "network": lambda: model._predict(molded, metas),
        "unmolding": lambda: unmold_detections(outputs[0][0], outputs[3][0], image.shape, molded[0].shape,
                                               windows[0]),
    }, repeats)
    stages["detections"] = len(model.detect([image])[0]["class_ids"])
    return stages


def bench_inference_path(backbone, repeats, logs):
    rng = np.random.default_rng(0)
    report = {}
    for label, shape, overrides in DETECT_SIZES:
        image = rng.integers(0, 255, shape, dtype=np.uint8)
        for confidence in (0.0, 0.7):  # every slot pasted; Matterport's default threshold
            model = modellib.MaskRCNN("inference", BenchConfig(BACKBONE=backbone, DETECTION_MIN_CONFIDENCE=confidence,
                                                               **overrides), logs)
            report[f"{label}_min_confidence_{confidence}"] = _inference_stages(model, image, repeats)
            keras.backend.clear_session()
    model = modellib.MaskRCNN("inference", BenchConfig(BACKBONE=backbone, IMAGES_PER_GPU=4), logs)
    images = [rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8) for _ in range(4)]
    molded, metas, _ = model.mold_inputs(images)
    batch = _interleaved({
        "detect_batch_of_4": lambda: model.detect(images),
        "detect_4_single_calls": lambda: [model.detect([i]) for i in images],
        "network_batch_of_4": lambda: model._predict(molded, metas),
        "network_4_single_calls": lambda: [model._predict(molded[i:i + 1], metas[i:i + 1]) for i in range(4)],
    }, repeats)
    report["1024x1024_4_images_s_per_image"] = {name: round(t / 4, 3) for name, t in batch.items()}
    return report


def profile_train_step(backbone, repeats, logs, size=512):
    """A training step (batch 1, all layers) split by stage, and the data pipeline's time per batch."""
    from stage_profile import stage_profile

    model, generator = _training_setup(backbone, logs, size)
    inputs, _ = generator[0]
    step = lambda: model.keras_model.train_on_batch(tuple(inputs))  # noqa: E731
    wall = median_seconds(step, repeats)
    report = stage_profile(model.keras_model, step, wall)
    report["data_pipeline_s_per_batch"] = median_seconds(lambda: generator[1], repeats)
    keras.backend.clear_session()
    return report


def profile_detect(backbone, repeats, logs):
    """detect() at 1024x1024 split into molding, the network's stages and unmolding."""
    from stage_profile import stage_profile

    config = BenchConfig(BACKBONE=backbone, IMAGE_RESIZE_MODE="square")
    model = modellib.MaskRCNN("inference", config, logs)
    image = np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
    molded, metas, windows = model.mold_inputs([image])
    outputs = model._predict(molded, metas)
    times = _interleaved({
        "detect": lambda: model.detect([image]),
        "molding": lambda: model.mold_inputs([image]),
        "network": lambda: model._predict(molded, metas),
        "unmolding": lambda: unmold_detections(outputs[0][0], outputs[3][0], image.shape, molded[0].shape,
                                               windows[0]),
    }, repeats)
    report = stage_profile(model.keras_model, lambda: model._predict(molded, metas), times["network"])
    report["detect_s"] = times["detect"]
    report["molding_s"], report["unmolding_s"] = times["molding"], times["unmolding"]
    report["post_processing_percent_of_detect"] = round(100 * times["unmolding"] / times["detect"], 1)
    keras.backend.clear_session()
    return report


def _devices(backend):
    """What the backend computes on: JAX's devices, PyTorch's CUDA device if it uses one, else TensorFlow's."""
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices()]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(0)] if torch.cuda.is_available() else ["cpu"]
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "resnet101"])
    parser.add_argument("--inference-path", action="store_true",
                        help="compare detect() with the NumPy path it replaced, and batched with single calls")
    parser.add_argument("--profile", action="store_true",
                        help="split a 512x512 training step and a 1024x1024 detect() by stage of the graph "
                             "(benchmarks/stage_profile.py); prints Markdown tables to stderr")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="the Keras backend (default: KERAS_BACKEND, else Keras's choice)")
    args = parser.parse_args(argv)
    backend = keras.backend.backend()
    if args.backend and args.backend != backend:
        parser.error(f"--backend {args.backend}: Keras already runs on {backend} (pass it on the command line)")
    if backend != "tensorflow" and (args.profile or args.inference_path):
        parser.error("--profile and --inference-path time TensorFlow's graph; run them without --backend")
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "keras": keras.__version__, "backend": backend, "devices": _devices(backend)},
              "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as logs:
        for backbone in args.backbones:
            if args.profile:
                from stage_profile import markdown

                report[backbone] = {"train_step_512x512": profile_train_step(backbone, args.repeats, logs),
                                    "detect_1024x1024": profile_detect(backbone, args.repeats, logs)}
                for name, profile in report[backbone].items():
                    print(markdown(profile, f"{backbone} {name}"), file=sys.stderr)
                continue
            if args.inference_path:
                report[backbone] = {"inference_path": bench_inference_path(backbone, args.repeats, logs)}
                print(json.dumps({backbone: report[backbone]}), file=sys.stderr)
                continue
            step, first_step = bench_train_step(backbone, args.repeats, logs)
            report[backbone] = {
                "detect_s_per_image": bench_detect(backbone, args.repeats, logs),
                "train_step_s_512x512_batch1": step,
            }
            if backend != "tensorflow":
                report[backbone]["train_first_step_s"] = first_step
            print(json.dumps({backbone: report[backbone]}), file=sys.stderr)
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
