"""Multiply-accumulates of the convolution and dense layers one forward pass runs, counted from the shapes
they really see (so the mask head on the positives only, the detections there are, etc. count as run).

:func:`keras_macs` wraps the ``call`` of Keras's ``Conv2D``, ``PooledConv2D`` (mrcnn's, a matrix
product), ``Conv2DTranspose`` and ``Dense`` while the model runs once, eagerly; :func:`torch_macs` puts
forward hooks on ``nn.Conv2d``, ``nn.ConvTranspose2d`` and ``nn.Linear``. Both return ``{layer class:
MACs}``. The other ops (batch norm, activations, crops, NMS) are memory-bound and not counted.
"""

from __future__ import annotations

import math
from collections import Counter


def _conv_macs(layer, inputs, outputs):
    kh, kw, channels, filters = layer.kernel.shape
    return math.prod(outputs.shape[:-1]) * kh * kw * channels * filters


def _transpose_macs(layer, inputs, outputs):
    kh, kw, filters, channels = layer.kernel.shape
    return math.prod(inputs.shape[:-1]) * kh * kw * channels * filters


def _dense_macs(layer, inputs, outputs):
    return math.prod(outputs.shape[:-1]) * layer.kernel.shape[0] * layer.kernel.shape[1]


def keras_macs(fn):
    """Run ``fn()`` (a forward pass, eager) and count its convolution and dense MACs by layer class."""
    import keras

    from mrcnn.layers.pooled_conv import PooledConv2D

    counts = Counter()
    patched = [(keras.layers.Conv2DTranspose, _transpose_macs), (keras.layers.Conv2D, _conv_macs),
               (PooledConv2D, _conv_macs), (keras.layers.Dense, _dense_macs)]
    originals = [(cls, cls.__dict__.get("call")) for cls, _ in patched]  # None: inherited

    def counting(cls, original, macs):
        def call(self, inputs, *args, **kwargs):
            outputs = original(self, inputs, *args, **kwargs)
            counts[cls.__name__] += macs(self, inputs, outputs)
            return outputs
        return call

    try:
        for cls, macs in patched:
            cls.call = counting(cls, cls.call, macs)
        fn()
    finally:
        for cls, original in originals:
            if original is None:
                del cls.call
            else:
                cls.call = original
    return dict(counts)


def torch_macs(model, fn):
    """Run ``fn()`` and count the MACs of ``model``'s convolution and linear modules by module class."""
    from torch import nn

    counts = Counter()

    def hook(module, inputs, output):
        if isinstance(module, nn.ConvTranspose2d):
            kh, kw = module.kernel_size
            macs = inputs[0].numel() * kh * kw * module.out_channels // module.groups
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * kh * kw * module.in_channels // module.groups
        else:
            macs = output.numel() * module.in_features
        counts[type(module).__name__] += macs

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        fn()
    finally:
        for handle in handles:
            handle.remove()
    return dict(counts)
