"""Time the graph's NMS (TensorFlow's NonMaxSuppressionV4 per image, mrcnn.ops.non_max_suppression_padded)
against the tiled batched ``tf.image.non_max_suppression_padded`` it replaced and against the ``keras.ops``
greedy NMS of the other backends (mrcnn.nms.greedy_nms_padded; plain and XLA-compiled), and print JSON.

Proposal-layer sizes: 6000 random boxes per image, 1000 kept at IoU 0.7, batch of 2; medians of 10 calls.

Usage: ``python benchmarks/bench_nms.py [--repeats 10]``
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import median_seconds  # noqa: E402  (benchmarks/timing.py)

from mrcnn import ops as mops  # noqa: E402
from mrcnn.nms import greedy_nms_padded  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 0.9, (2, 6000, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(0.01, 0.1, (2, 6000, 2))], -1).astype(np.float32)
    scores = rng.random((2, 6000)).astype(np.float32)
    per_image = tf.function(lambda b, s: mops.non_max_suppression_padded(b, s, 1000, 0.7))
    tiled = tf.function(lambda b, s: tf.image.non_max_suppression_padded(b, s, 1000, iou_threshold=0.7,
                                                                         pad_to_max_output_size=True))
    keras_ops = tf.function(lambda b, s: greedy_nms_padded(b, s, 1000, 0.7))
    keras_ops_xla = tf.function(lambda b, s: greedy_nms_padded(b, s, 1000, 0.7), jit_compile=True)
    report = {"boxes_per_image": 6000, "kept": 1000, "batch": 2, "repeats": args.repeats,
              "v4_per_image_s": median_seconds(lambda: per_image(boxes, scores), args.repeats, digits=4),
              "tiled_padded_s": median_seconds(lambda: tiled(boxes, scores), args.repeats, digits=4),
              "keras_ops_greedy_s": median_seconds(lambda: keras_ops(boxes, scores), args.repeats, digits=4),
              "keras_ops_greedy_xla_s": median_seconds(lambda: keras_ops_xla(boxes, scores), args.repeats,
                                                       digits=4)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
