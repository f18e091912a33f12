"""What local self-attention costs against the 3x3 convolution it replaces; prints JSON.

* Layer level, at the ResNet feature maps of Cityscapes (stage 4 and stage 5 of a ResNet at width 64, for a
  1024x1024 training crop and a 1024x2048 test frame), the 3x3 convolution against
  ``LocalSelfAttention2D(kernel_size=7, heads=8)`` with grouped (the default) and full projections: seconds
  (batch 1, median after a warm-up) for a forward pass; for a training pass, forward + backward with the
  gradients of the weights and of the input (what the layer costs inside a network; the loss is
  ``sum(y * g)`` for a fixed random ``g`` and is returned, so no part of the forward pass is pruned); and
  for the gradient of the weights alone of ``sum(y)`` (the first round's measure: for a convolution
  TensorFlow then prunes the forward pass and computes one filter gradient). Also analytic GFLOPs,
  parameters, and memory: the peak resident memory a fresh process gains while running the passes (each
  case in its own process). ``ratios`` divides each attention time by the convolution's.
* Model level: one training step of ResNet-50 Mask R-CNN at 512x512 (batch 1, all layers trainable) with
  and without attention in stages 4 and 5 (kernel 7, 8 heads).

Usage: ``python benchmarks/bench_attention.py [--repeats 3] [--skip-model]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository

from timing import median_seconds  # noqa: E402  (benchmarks/timing.py)

# (label, height, width, channels): the bottleneck's 3x3 input/output channels at that stage
CASES = [
    ("stage4_crop1024", 64, 64, 256),
    ("stage5_crop1024", 32, 32, 512),
    ("stage4_frame1024x2048", 64, 128, 256),
    ("stage5_frame1024x2048", 32, 64, 512),
]


ATTENTION_KINDS = ("attention_k7_h8_grouped", "attention_k7_h8_full")
TIMES = ("forward_s", "forward_backward_s", "weights_gradient_s")


def layer_case(kind, height, width, channels, repeats):
    """Runs in a child process: time and peak-memory growth of one layer."""
    import keras
    import numpy as np
    import tensorflow as tf

    from attention import LocalSelfAttention2D
    from mrcnn.costs import layer_flops, peak_rss_mb

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(1, height, width, channels)).astype("float32"))
    g = tf.constant(rng.normal(size=(1, height, width, channels)).astype("float32"))
    if kind == "conv3x3":
        layer = keras.layers.Conv2D(channels, 3, padding="same")
    else:
        layer = LocalSelfAttention2D(channels, kernel_size=7, heads=8, projection=kind.split("_")[-1])
    layer.build(x.shape)
    before = peak_rss_mb()
    forward = tf.function(lambda: layer(x))

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * g)
        return loss, tape.gradient(loss, layer.trainable_weights + [x])

    @tf.function
    def weights_gradient():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x))
        return tape.gradient(loss, layer.trainable_weights)

    out = forward()
    return {
        "forward_s": median_seconds(forward, repeats, digits=4),
        "forward_backward_s": median_seconds(forward_backward, repeats, digits=4),
        "weights_gradient_s": median_seconds(weights_gradient, repeats, digits=4),
        "gflops_forward": round(layer_flops(layer, tuple(x.shape), tuple(out.shape)) / 1e9, 3),
        "params": int(layer.count_params()),
        "peak_rss_growth_mb": round(peak_rss_mb() - before, 1),
    }


def model_step(attention, repeats):
    """Runs in a child process: one ResNet-50 training step at 512x512."""
    import keras

    from mrcnn import model as modellib
    from mrcnn.config import Config
    from mrcnn.costs import backbone_flops, peak_rss_mb
    from mrcnn.data.generator import DataGenerator
    from mrcnn.shapes import ShapesDataset

    config = Config(NAME="bench", NUM_CLASSES=4, IMAGES_PER_GPU=1, BACKBONE="resnet50", IMAGE_MIN_DIM=512,
                    IMAGE_MAX_DIM=512, ATTENTION_STAGES=(4, 5) if attention else ())
    dataset = ShapesDataset()
    dataset.load_shapes(4, 512, 512, seed=0)
    dataset.prepare()
    import tempfile

    with tempfile.TemporaryDirectory() as logs:
        model = modellib.MaskRCNN("training", config, logs, seed=0)
    model.set_trainable("all", verbose=0)
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    inputs, _ = DataGenerator(dataset, config, seed=0)[0]
    seconds = median_seconds(lambda: model.keras_model.train_on_batch(tuple(inputs)), repeats, digits=4)
    return {"train_step_s": seconds, "params": int(model.keras_model.count_params()),
            "backbone_gflops_per_image": round(backbone_flops(model.keras_model) / 1e9, 2),
            "peak_rss_mb": round(peak_rss_mb()), "keras": keras.__version__}


def _child(call):
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(call)], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        call = json.loads(args.child)
        fn = layer_case if call.pop("fn") == "layer" else model_step
        print(json.dumps(fn(**call)))
        return
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "repeats": args.repeats,
              "layers": {}, "model": {}}
    for label, height, width, channels in CASES:
        case = {kind: _child({"fn": "layer", "kind": kind, "height": height, "width": width, "channels": channels,
                              "repeats": args.repeats})
                for kind in ("conv3x3",) + ATTENTION_KINDS}
        case["ratios"] = {kind: {key: round(case[kind][key] / case["conv3x3"][key], 2) for key in TIMES}
                          for kind in ATTENTION_KINDS}
        report["layers"][label] = case
        print(json.dumps({label: case}), file=sys.stderr)
    if not args.skip_model:
        for name, attention in (("resnet50", False), ("resnet50_attention45", True)):
            report["model"][name] = _child({"fn": "model", "attention": attention, "repeats": args.repeats})
            print(json.dumps({name: report["model"][name]}), file=sys.stderr)
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
