"""Seconds per training step in each GPU-side mode, printed as JSON.

ResNet-50 Mask R-CNN at 512x512, all layers trainable, random weights, one synthetic batch, for every
combination of precision (float32, mixed_bfloat16, mixed_float16 with ``--fp16``) and XLA (off, on), and,
on a machine with GPUs, for GPU_COUNT = 1, 2, ... up to the GPUs it has (batch IMAGES_PER_GPU per GPU).
The first call of each mode (tracing, XLA compilation) is timed apart as ``first_step_s``.

On a CPU the numbers say what each mode costs there, not on a GPU: CPUs without bfloat16 units emulate
it, and XLA on CPU is not tuned as on GPUs.

Usage: ``python benchmarks/bench_train.py [--repeats 3] [--images-per-gpu 1] [--fp16] [--size 512]
[--precisions float32 mixed_bfloat16] [--xla off on]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import median_seconds  # noqa: E402  (benchmarks/timing.py)

from mrcnn import model as modellib  # noqa: E402
from mrcnn.config import Config  # noqa: E402
from mrcnn.data.generator import DataGenerator, model_inputs  # noqa: E402
from mrcnn.shapes import ShapesDataset  # noqa: E402


class BenchConfig(Config):
    NAME = "bench"
    NUM_CLASSES = 4
    BACKBONE = "resnet50"


def step_seconds(config, repeats, logs):
    dataset = ShapesDataset()
    dataset.load_shapes(2 * config.BATCH_SIZE, config.IMAGE_MAX_DIM, config.IMAGE_MAX_DIM, seed=0)
    dataset.prepare()
    model = modellib.MaskRCNN("training", config, logs, seed=0)
    model.set_trainable("all", verbose=0)
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    inputs = tuple(model_inputs(DataGenerator(dataset, config, seed=0)[0][0]))
    if model.strategy is not None:  # a global batch split across the GPUs, as fit does it
        data = iter(model.strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors((inputs,)).repeat()))
        step = model.keras_model.make_train_function()

        def train():
            return step(data)
    else:
        def train():
            return model.keras_model.train_on_batch(inputs)
    start = time.perf_counter()
    train()
    first = time.perf_counter() - start
    seconds = median_seconds(train, repeats)
    keras.backend.clear_session()
    return {"s_per_step": seconds, "first_step_s": round(first, 1),
            "images_per_s": round(config.BATCH_SIZE / seconds, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--images-per-gpu", type=int, default=1)
    parser.add_argument("--fp16", action="store_true", help="also time mixed_float16 (slow on CPUs)")
    parser.add_argument("--precisions", nargs="+", choices=("float32", "mixed_bfloat16", "mixed_float16"),
                        help="only these precisions (default float32 and mixed_bfloat16, plus --fp16)")
    parser.add_argument("--xla", nargs="+", choices=("off", "on"), default=["off", "on"],
                        help="XLA settings to time on one device")
    args = parser.parse_args(argv)
    gpus = len(tf.config.list_physical_devices("GPU"))
    precisions = [None, "mixed_bfloat16"] + (["mixed_float16"] if args.fp16 else [])
    if args.precisions:
        precisions = [None if p == "float32" else p for p in args.precisions]
    report = {"machine": {"cpus": os.cpu_count(), "gpus": gpus, "python": platform.python_version(),
                          "tensorflow": tf.__version__, "keras": keras.__version__},
              "size": args.size, "images_per_gpu": args.images_per_gpu, "repeats": args.repeats, "runs": []}
    with tempfile.TemporaryDirectory() as logs:
        for gpu_count in range(1, max(1, gpus) + 1):
            for precision in precisions:
                # XLA with several GPUs: Keras's auto leaves it off under tf.distribute; time what users get
                for jit in ([x == "on" for x in args.xla] if gpu_count == 1 else (False,)):
                    config = BenchConfig(IMAGE_MIN_DIM=args.size, IMAGE_MAX_DIM=args.size, GPU_COUNT=gpu_count,
                                         IMAGES_PER_GPU=args.images_per_gpu, MIXED_PRECISION=precision,
                                         JIT_COMPILE=jit)
                    run = {"gpu_count": gpu_count, "precision": precision or "float32", "xla": jit,
                           **step_seconds(config, args.repeats, logs)}
                    print(json.dumps(run), file=sys.stderr)
                    report["runs"].append(run)
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
