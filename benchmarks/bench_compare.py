"""mrcnn against torchvision's Mask R-CNN, side by side in one run, printed as JSON.

Times, with interleaved repeats (mrcnn, then torchvision, then mrcnn...) and medians, on random weights:

* one training step (all layers, frozen batch norm in both, SGD) at 512x512 and 1024x1024, batch 1 and 2;
* inference (``detect`` / ``model.eval()(images)``) at 1024x1024 and 1024x2048, batch 1;
* the time from ``MaskRCNN.train()`` to its first step, twice in one process (a second call with the same
  layers);
* the work each does: forward multiply-accumulates of the convolution and dense layers (benchmarks/macs.py)
  in a training pass at 512x512 and inference at 1024x1024 (``macs``);

with the ratio mrcnn / torchvision and the machine's load average while it ran. Both models are ResNet-50 FPN
Mask R-CNNs set to the same work where torchvision exposes it: the same image size (torchvision's transform
keeps it: ``min_size = max_size`` = the size), 2000 proposals after NMS in training and 1000 in inference,
200 sampled ROIs per image with 33% positives, 100 detections at score >= 0.7, the same classes, images and
ground truth, and as many torch threads as TensorFlow uses (``--threads``, default: all cores).

torchvision is a benchmark-only dependency, never installed by the main install (5.5 GB in a venv on
x86_64 Linux with pip's default CUDA build; the CPU build from PyTorch's index is smaller):
``pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu``

Usage: ``python benchmarks/bench_compare.py [--repeats 3] [--threads N] [--only train|detect|first-step|macs]
[--train-sizes 512 1024] [--batches 1 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from timing import threads_from_argv  # noqa: E402  (benchmarks/timing.py)

THREADS = threads_from_argv(sys.argv[1:])

# torchvision before TensorFlow: imported after it, torchvision 0.29 crashes the process (segfault)
try:
    import torch  # noqa: E402
    import torchvision  # noqa: E402
    from torchvision.models.detection import MaskRCNN  # noqa: E402
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor  # noqa: E402
    from torchvision.ops.misc import FrozenBatchNorm2d  # noqa: E402
except ImportError as error:  # a message, not a code path
    sys.exit(f"bench_compare needs torchvision ({error}); install it beside mrcnn with "
             f"`pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu`")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)


from mrcnn import model as modellib  # noqa: E402
from mrcnn.config import Config  # noqa: E402
from mrcnn.data.generator import DataGenerator, model_inputs  # noqa: E402
from mrcnn.shapes import ShapesDataset  # noqa: E402
from mrcnn.utils import extract_bboxes  # noqa: E402

torch.set_num_threads(THREADS)


class CompareConfig(Config):
    NAME = "compare"
    BACKBONE = "resnet50"
    NUM_CLASSES = 4
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0.7


def torchvision_model(config, training):
    """torchvision's maskrcnn_resnet50_fpn, frozen batch norm (Matterport's TRAIN_BN=False), the Config's
    sizes and counts."""
    size = int(config.IMAGE_MAX_DIM)
    backbone = _resnet_fpn_extractor(torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d), 5)
    model = MaskRCNN(
        backbone, num_classes=config.NUM_CLASSES, min_size=int(config.IMAGE_MIN_DIM), max_size=size,
        rpn_pre_nms_top_n_train=config.PRE_NMS_LIMIT, rpn_pre_nms_top_n_test=config.PRE_NMS_LIMIT,
        rpn_post_nms_top_n_train=config.POST_NMS_ROIS_TRAINING,
        rpn_post_nms_top_n_test=config.POST_NMS_ROIS_INFERENCE,
        rpn_nms_thresh=config.RPN_NMS_THRESHOLD, rpn_batch_size_per_image=config.RPN_TRAIN_ANCHORS_PER_IMAGE,
        box_batch_size_per_image=config.TRAIN_ROIS_PER_IMAGE, box_positive_fraction=config.ROI_POSITIVE_RATIO,
        box_score_thresh=config.DETECTION_MIN_CONFIDENCE, box_nms_thresh=config.DETECTION_NMS_THRESHOLD,
        box_detections_per_img=config.DETECTION_MAX_INSTANCES)
    return model.train(training)


def _dataset(config, count):
    dataset = ShapesDataset()
    dataset.load_shapes(count, config.IMAGE_MAX_DIM, config.IMAGE_MAX_DIM, seed=0)
    dataset.prepare()
    return dataset


def _torch_batch(dataset, ids):
    images, targets = [], []
    for image_id in ids:
        image = dataset.load_image(image_id)
        masks, class_ids = dataset.load_mask(image_id)
        boxes = extract_bboxes(masks)[:, [1, 0, 3, 2]]  # (y1, x1, y2, x2) -> (x1, y1, x2, y2)
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255.0)
        targets.append({"boxes": torch.from_numpy(boxes).float(), "labels": torch.from_numpy(class_ids).long(),
                        "masks": torch.from_numpy(np.moveaxis(masks, -1, 0).astype(np.uint8))})
    return images, targets


def train_steps(size, batch, logs):
    """(mrcnn step, torchvision step) callables on the same images and ground truth."""
    config = CompareConfig(IMAGE_MIN_DIM=size, IMAGE_MAX_DIM=size, IMAGES_PER_GPU=batch)
    dataset = _dataset(config, 2 * batch)
    model = modellib.MaskRCNN("training", config, logs, seed=0)
    model.set_trainable("all", verbose=0)
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    inputs = tuple(model_inputs(DataGenerator(dataset, config, seed=0)[0][0]))

    torch.manual_seed(0)
    reference = torchvision_model(config, training=True)
    optimizer = torch.optim.SGD(reference.parameters(), lr=config.LEARNING_RATE,
                                momentum=config.LEARNING_MOMENTUM, weight_decay=config.WEIGHT_DECAY)
    images, targets = _torch_batch(dataset, list(range(batch)))

    def torchvision_step():
        optimizer.zero_grad()
        losses = reference(images, targets)
        sum(losses.values()).backward()
        optimizer.step()

    return (lambda: model.keras_model.train_on_batch(inputs)), torchvision_step


def detect_calls(shape, logs):
    overrides = ({"IMAGE_RESIZE_MODE": "square", "IMAGE_MIN_DIM": shape[0], "IMAGE_MAX_DIM": shape[1]}
                 if shape[0] == shape[1] else
                 {"IMAGE_RESIZE_MODE": "pad64", "IMAGE_MIN_DIM": shape[0], "IMAGE_MAX_DIM": shape[1]})
    config = CompareConfig(NUM_CLASSES=81, **overrides)
    model = modellib.MaskRCNN("inference", config, logs)
    image = np.random.default_rng(0).integers(0, 255, tuple(shape) + (3,), dtype=np.uint8)
    torch.manual_seed(0)
    reference = torchvision_model(config, training=False)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0

    def torchvision_detect():
        with torch.no_grad():
            return reference([tensor])

    return (lambda: model.detect([image])), torchvision_detect


def forward_macs(logs):
    """Forward multiply-accumulates (convolution and dense layers, benchmarks/macs.py) of both models: a
    training forward pass at 512x512, batch 1, and an inference pass at 1024x1024, on the inputs above."""
    from macs import keras_macs, torch_macs

    def summary(ours, theirs):
        by_layer = {"mrcnn": {k: round(v / 1e9, 2) for k, v in ours.items()},
                    "torchvision": {k: round(v / 1e9, 2) for k, v in theirs.items()}}
        ours, theirs = sum(ours.values()), sum(theirs.values())
        return {"mrcnn_gmac": round(ours / 1e9, 1), "torchvision_gmac": round(theirs / 1e9, 1),
                "ratio": round(ours / theirs, 3), "gmac_by_layer_class": by_layer}

    config = CompareConfig(IMAGE_MIN_DIM=512, IMAGE_MAX_DIM=512)
    dataset = _dataset(config, 2)
    model = modellib.MaskRCNN("training", config, logs, seed=0)
    inputs = list(model_inputs(DataGenerator(dataset, config, seed=0)[0][0]))
    torch.manual_seed(0)
    reference = torchvision_model(config, training=True)
    images, targets = _torch_batch(dataset, [0])
    report = {"train_forward_512x512_batch1": summary(keras_macs(lambda: model.keras_model(inputs)),
                                                      torch_macs(reference, lambda: reference(images, targets)))}
    config = CompareConfig(NUM_CLASSES=81, IMAGE_RESIZE_MODE="square", IMAGE_MIN_DIM=1024, IMAGE_MAX_DIM=1024)
    model = modellib.MaskRCNN("inference", config, logs)
    image = np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
    molded, metas, _ = model.mold_inputs([image])
    torch.manual_seed(0)
    reference = torchvision_model(config, training=False)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    with torch.no_grad():
        report["detect_1024x1024"] = summary(
            keras_macs(lambda: model.keras_model([np.asarray(molded, np.float32), np.asarray(metas, np.float32)])),
            torch_macs(reference, lambda: reference([tensor])))
    return report


class FirstStep(keras.callbacks.Callback):
    """Notes when the first training step of a fit ends."""

    at = None

    def on_train_batch_end(self, batch, logs=None):
        if self.at is None:
            self.at = time.perf_counter()


def first_steps(logs, size=512):
    """Seconds from MaskRCNN.train() to the end of its first step, for two calls with the same layers."""
    config = CompareConfig(IMAGE_MIN_DIM=size, IMAGE_MAX_DIM=size, STEPS_PER_EPOCH=1, VALIDATION_STEPS=1)
    dataset = _dataset(config, 4)
    model = modellib.MaskRCNN("training", config, logs, seed=0)
    seconds = []
    for epochs in (1, 2):
        first = FirstStep()
        start = time.perf_counter()
        model.train(dataset, dataset, config.LEARNING_RATE, epochs=epochs, layers="all",
                    custom_callbacks=[first], verbose=0)
        seconds.append(round(first.at - start, 1))
    return {"train_call_1_s_to_first_step": seconds[0], "train_call_2_s_to_first_step": seconds[1]}


class LoadMonitor:
    """The 1-minute load average, sampled every few seconds while the benchmark runs."""

    def __init__(self, every=5.0):
        self.samples, self._stop, self.every = [], threading.Event(), every
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self):
        return {"cores": os.cpu_count(), "load_avg_1min_mean": round(statistics.mean(self.samples), 2),
                "load_avg_1min_max": round(max(self.samples), 2)}


def interleaved(pair, repeats):
    """Medians of the two calls timed in turn, after one warm-up call each."""
    for fn in pair:
        fn()
    times = ([], [])
    for _ in range(repeats):
        for fn, bucket in zip(pair, times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    mrcnn, reference = (statistics.median(t) for t in times)
    return {"mrcnn_s": round(mrcnn, 3), "torchvision_s": round(reference, 3), "ratio": round(mrcnn / reference, 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="TensorFlow's and torch's threads (read before TensorFlow starts)")
    parser.add_argument("--only", nargs="+", choices=["train", "detect", "first-step", "macs"],
                        default=["train", "detect", "first-step", "macs"])
    parser.add_argument("--train-sizes", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args(argv)
    report = {"machine": {"python": platform.python_version(), "tensorflow": tf.__version__,
                          "keras": keras.__version__, "torch": torch.__version__,
                          "torchvision": torchvision.__version__, "threads": THREADS},
              "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as logs, LoadMonitor() as load:
        if "train" in args.only:
            for size in args.train_sizes:
                for batch in args.batches:
                    report[f"train_step_{size}x{size}_batch{batch}"] = interleaved(train_steps(size, batch, logs),
                                                                                   args.repeats)
                    keras.backend.clear_session()
                    print(json.dumps(report), file=sys.stderr)
        if "detect" in args.only:
            for shape in ((1024, 1024), (1024, 2048)):
                report[f"detect_{shape[0]}x{shape[1]}"] = interleaved(detect_calls(shape, logs), args.repeats)
                keras.backend.clear_session()
                print(json.dumps(report), file=sys.stderr)
        if "first-step" in args.only:
            report["time_to_first_step_512x512"] = first_steps(logs)
        if "macs" in args.only:
            report["forward_macs"] = forward_macs(logs)
    report["machine"].update(load.summary())
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
