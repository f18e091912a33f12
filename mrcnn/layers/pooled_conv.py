"""The classifier head's "fully connected as a convolution" layers, computed as one matrix product.

Matterport's classifier head runs a ``pool_size x pool_size`` ``valid`` convolution over each 7x7 ROI
feature (``mrcnn_class_conv1``) and a 1x1 convolution over its 1x1 output (``mrcnn_class_conv2``): each is a
dense layer over the flattened input. TensorFlow's CPU gradient of such a convolution can be very slow
(``python benchmarks/bench_pooled_conv.py``: 200 ROIs, forward and backward, 12.1 s as ``Conv2D`` against
0.17 s as one matrix product, forward alone 0.04 s either way). :class:`PooledConv2D` is a ``Conv2D`` with the
same kernel ``[kh, kw, C, F]``, bias, names and weights (Matterport's files load unchanged) whose ``call`` is
``reshape(x, [N, kh * kw * C]) @ reshape(kernel, [kh * kw * C, F])``: the same sum, in another order.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="mrcnn")
class PooledConv2D(layers.Conv2D):
    """A ``valid`` ``Conv2D`` whose kernel covers its whole input (``[N, kh, kw, C]`` -> ``[N, 1, 1, F]``),
    computed as one matrix product. Any other input size is a ``ValueError``."""

    def build(self, input_shape):
        kernel = tuple(self.kernel_size)
        if (self.padding != "valid" or self.data_format != "channels_last" or tuple(self.strides) != (1, 1)
                or tuple(self.dilation_rate) != (1, 1) or self.groups != 1):
            raise ValueError(f"PooledConv2D {self.name}: needs padding='valid', channels_last, strides 1, "
                             f"dilation 1 and groups 1")
        if tuple(input_shape[1:3]) != kernel:
            raise ValueError(f"PooledConv2D {self.name}: the kernel {kernel} must cover the input, whose height "
                             f"and width are {tuple(input_shape[1:3])}")
        super().build(input_shape)

    def call(self, inputs):
        kh, kw, channels, filters = self.kernel.shape
        flat = ops.reshape(inputs, (-1, kh * kw * channels))
        kernel = ops.reshape(self.kernel, (kh * kw * channels, filters))
        outputs = ops.matmul(flat, kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        outputs = ops.reshape(outputs, (-1, 1, 1, filters))
        return outputs if self.activation is None else self.activation(outputs)

