"""The classifier head's 7x7 "fully connected" convolution as Keras's Conv2D and as PooledConv2D (one matrix
product, the same weights): forward and forward+backward seconds, printed as JSON.

Matterport's shape: 200 ROIs (TRAIN_ROIS_PER_IMAGE) of 7x7x256 pooled features to 1024 channels, the input
gradient included (the FPN below it trains). Medians of ``--repeats`` after a warm-up call.

Usage: ``python benchmarks/bench_pooled_conv.py [--repeats 5] [--rois 200]``
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import median_seconds  # noqa: E402  (benchmarks/timing.py)

from mrcnn.layers.pooled_conv import PooledConv2D  # noqa: E402


def _median(fn, x, repeats):
    """Median seconds of ``fn(x)``, its outputs fetched to NumPy (so the work is done when timed)."""
    return median_seconds(lambda: tf.nest.map_structure(lambda t: t.numpy(), fn(x)), repeats, digits=4)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rois", type=int, default=200)
    args = parser.parse_args(argv)
    x = tf.constant(np.random.default_rng(0).normal(size=(args.rois, 7, 7, 256)).astype(np.float32))
    report = {"rois": args.rois, "repeats": args.repeats}
    for name, cls in (("Conv2D", keras.layers.Conv2D), ("PooledConv2D", PooledConv2D)):
        layer = cls(1024, 7)
        layer.build(x.shape)

        def step(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x))
            return tape.gradient(loss, [x] + layer.trainable_weights)

        report[name] = {"forward_s": _median(tf.function(layer.__call__), x, args.repeats),
                        "forward_backward_s": _median(tf.function(step), x, args.repeats)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
