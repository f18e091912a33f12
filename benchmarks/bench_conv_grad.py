"""Stride-1 convolutions of a ResNet-50 FPN training step at 512x512, forward and backward, with TensorFlow's
gradients (``keras.layers.Conv2D``) and with mrcnn's (``mrcnn.layers.conv.Conv2D``, the same weights and
forward op): seconds per shape and summed, printed as JSON.

The shapes are the distinct stride-1 convolutions the model runs at 512x512 with one image (backbone stages at
128..16, the FPN's 3x3 at 128..16, the RPN's shared 3x3 and its 1x1 outputs at 128..8, the mask head's 3x3
on ``--rois`` 14x14 ROIs), each once; medians of ``--repeats`` after a warm-up call, the gradients of input,
kernel and bias fetched.

Usage: ``python benchmarks/bench_conv_grad.py [--repeats 5] [--rois 66] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from timing import threads_from_argv  # noqa: E402  (benchmarks/timing.py)

THREADS = threads_from_argv(sys.argv[1:])

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import median_seconds  # noqa: E402  (benchmarks/timing.py)

from mrcnn.layers.conv import Conv2D  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)


def shapes(rois):
    """``(name, [N, H, W, C], filters, kernel)`` of the step's distinct stride-1 convolutions."""
    found = []
    for size, (f1, c_out) in zip((128, 64, 32, 16), ((64, 256), (128, 512), (256, 1024), (512, 2048))):
        found += [(f"res_{size}_2a", [1, size, size, c_out], f1, 1), (f"res_{size}_2b", [1, size, size, f1], f1, 3),
                  (f"res_{size}_2c", [1, size, size, f1], c_out, 1)]
        found += [(f"fpn_lateral_{size}", [1, size, size, c_out], 256, 1),
                  (f"fpn_p_{size}", [1, size, size, 256], 256, 3)]
    for size in (128, 64, 32, 16, 8):
        found += [(f"rpn_shared_{size}", [1, size, size, 256], 512, 3),
                  (f"rpn_class_{size}", [1, size, size, 512], 6, 1), (f"rpn_bbox_{size}", [1, size, size, 512], 12, 1)]
    found += [("mask_conv", [rois, 14, 14, 256], 256, 3), ("mask_out", [rois, 28, 28, 256], 4, 1)]
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rois", type=int, default=66)
    parser.add_argument("--threads", type=int, default=THREADS, help="TensorFlow's intra/inter-op threads")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows, totals = {}, {"tensorflow_s": 0.0, "mrcnn_s": 0.0}
    for name, shape, filters, kernel in shapes(args.rois):
        x = tf.constant(rng.normal(size=shape).astype(np.float32))
        row = {"input": shape, "filters": filters, "kernel": kernel}
        for key, cls in (("tensorflow_s", keras.layers.Conv2D), ("mrcnn_s", Conv2D)):
            layer = cls(filters, kernel, padding="same", activation="relu")
            layer.build(x.shape)

            @tf.function
            def step(x, layer=layer):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(tf.square(layer(x)))
                return tape.gradient(loss, [x] + layer.trainable_weights)

            row[key] = median_seconds(lambda step=step, x=x: [g.numpy() for g in step(x)], args.repeats, digits=4)
            totals[key] += row[key]
        rows[name] = row
    totals = {k: round(v, 3) for k, v in totals.items()}
    print(json.dumps({"threads": args.threads, "repeats": args.repeats, "total": totals,
                      "ratio": round(totals["mrcnn_s"] / totals["tensorflow_s"], 3), "shapes": rows}, indent=1))


if __name__ == "__main__":
    main()
