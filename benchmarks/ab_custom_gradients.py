"""A/B of mrcnn's custom CPU gradients (mrcnn.layers.conv.Conv2D, PooledConv2D's matmul gradient) against
Keras's own, one whole training step, in one process, interleaved; prints JSON.

ResNet-50 Mask R-CNN at 512x512, batch 1, all layers trainable, XLA off, float32 and mixed_bfloat16. Each
variant is a model of its own, traced with the custom gradients on ("custom") or off ("keras"); the steps are
then timed alternately, ``--repeats`` times each.

Usage: ``python benchmarks/ab_custom_gradients.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from keras import ops  # noqa: E402

from mrcnn import model as modellib  # noqa: E402
from mrcnn.config import Config  # noqa: E402
from mrcnn.data.generator import DataGenerator, model_inputs  # noqa: E402
from mrcnn.layers import conv, pooled_conv  # noqa: E402
from mrcnn.shapes import ShapesDataset  # noqa: E402


class BenchConfig(Config):
    NAME = "bench"
    NUM_CLASSES = 4
    BACKBONE = "resnet50"
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = 512
    IMAGE_MAX_DIM = 512
    JIT_COMPILE = False


@contextlib.contextmanager
def keras_gradients():
    """Trace with Keras's convolution and matmul gradients (the custom ones switched off)."""
    saved = conv.Conv2D._tf_cpu_gradients, pooled_conv._tf_matmul
    conv.Conv2D._tf_cpu_gradients = lambda self, shape: False
    pooled_conv._tf_matmul = ops.matmul
    try:
        yield
    finally:
        conv.Conv2D._tf_cpu_gradients, pooled_conv._tf_matmul = saved


def traced_step(config, logs, custom):
    dataset = ShapesDataset()
    dataset.load_shapes(2, 512, 512, seed=0)
    dataset.prepare()
    model = modellib.MaskRCNN("training", config, logs, seed=0)
    model.set_trainable("all", verbose=0)
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    inputs = tuple(model_inputs(DataGenerator(dataset, config, seed=0)[0][0]))
    start = time.perf_counter()
    with contextlib.nullcontext() if custom else keras_gradients():
        model.keras_model.train_on_batch(inputs)
    first = time.perf_counter() - start
    return (lambda: model.keras_model.train_on_batch(inputs)), first


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    report = {"cpus": os.cpu_count(), "keras": keras.__version__, "repeats": args.repeats, "runs": []}
    with tempfile.TemporaryDirectory() as logs:
        for precision in ("float32", "mixed_bfloat16"):
            config = BenchConfig(MIXED_PRECISION=None if precision == "float32" else precision)
            steps, firsts, times = {}, {}, {"custom": [], "keras": []}
            for variant in ("custom", "keras"):
                steps[variant], firsts[variant] = traced_step(config, logs, variant == "custom")
                steps[variant]()  # a warm-up step after tracing
            for _ in range(args.repeats):
                for variant in ("custom", "keras"):
                    start = time.perf_counter()
                    steps[variant]()
                    times[variant].append(time.perf_counter() - start)
            run = {"precision": precision,
                   **{f"{v}_s": round(statistics.median(t), 3) for v, t in times.items()},
                   **{f"{v}_all_s": [round(x, 3) for x in t] for v, t in times.items()},
                   **{f"{v}_first_step_s": round(f, 1) for v, f in firsts.items()}}
            run["custom_over_keras"] = round(run["custom_s"] / run["keras_s"], 3)
            print(json.dumps(run), file=sys.stderr)
            report["runs"].append(run)
            keras.backend.clear_session()
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
