"""What a model costs: backbone FLOPs counted from layer shapes, step times, peak memory.

FLOPs are counted analytically (a multiply-add is 2 FLOPs) for the layers that differ between the
convolutional and the attention backbone, i.e. the ResNet and FPN layers (``conv1``, ``res*``, ``fpn_*``);
the RPN and heads are the same in both and are left out. For ``LocalSelfAttention2D`` on an
``H x W x C`` input with F filters, N heads and a k x k window: projections ``3 * 2*H*W*C*F`` (full) or
``3 * 2*H*W*C*F / N`` (grouped), content logits ``2*H*W*k*k*F``, position logits ``2*H*W*k*k*F``, weighted
sum of values ``2*H*W*k*k*F`` (the softmax and the border mask are not counted). These are the formula's
FLOPs; the blocked computation multiplies more (it takes logits over each block's whole halo, see
``attention.local_attention``).
"""

from __future__ import annotations

import resource
import sys
import time

import keras
import numpy as np

from attention.local_attention import LocalSelfAttention2D

BACKBONE_PREFIXES = ("conv1", "res", "fpn_")


def layer_flops(layer, input_shape, output_shape):
    """FLOPs of one image through ``layer`` (Conv2D or LocalSelfAttention2D; other layers count 0)."""
    if isinstance(layer, LocalSelfAttention2D):
        h, w, c = input_shape[1], input_shape[2], input_shape[3]
        f, window = layer.filters, layer.kernel_size ** 2
        groups = layer.heads if layer.projection == "grouped" else 1
        return 3 * 2 * h * w * c * f // groups + 3 * 2 * h * w * window * f
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        h, w, f = output_shape[1], output_shape[2], output_shape[3]
        return 2 * h * w * kh * kw * int(input_shape[-1]) * f
    return 0


def backbone_flops(keras_model):
    """Backbone (ResNet + FPN) FLOPs for one image at the model's input size."""
    total = 0
    for layer in keras_model.layers:
        if not layer.name.startswith(BACKBONE_PREFIXES) or not isinstance(
                layer, (keras.layers.Conv2D, LocalSelfAttention2D)):
            continue
        total += layer_flops(layer, tuple(layer.input.shape), tuple(layer.output.shape))
    return total


def backbone_params(keras_model):
    """Parameters of the backbone layers (ResNet + FPN), as counted for the FLOPs."""
    return int(sum(layer.count_params() for layer in keras_model.layers
                   if layer.name.startswith(BACKBONE_PREFIXES)))


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class StepTimer(keras.callbacks.Callback):
    """Wall time of every training step; ``seconds_per_step`` leaves out the first ``skip`` (tracing)."""

    def __init__(self, skip=5):
        super().__init__()
        self.skip = skip
        self.times = []
        self._start = None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)

    def seconds_per_step(self):
        times = self.times[self.skip:] or self.times
        return float(np.median(times)) if times else float("nan")
