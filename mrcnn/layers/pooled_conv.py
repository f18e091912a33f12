"""The classifier head's "fully connected as a convolution" layers, computed as one matrix product.

Matterport's classifier head runs a ``pool_size x pool_size`` ``valid`` convolution over each 7x7 ROI
feature (``mrcnn_class_conv1``) and a 1x1 convolution over its 1x1 output (``mrcnn_class_conv2``): each is a
dense layer over the flattened input. TensorFlow's CPU gradient of such a convolution can be very slow
(``python benchmarks/bench_pooled_conv.py``: 200 ROIs, forward and backward, 12.1 s as ``Conv2D`` against
0.17 s as one matrix product, forward alone 0.04 s either way). :class:`PooledConv2D` is a ``Conv2D`` with the
same kernel ``[kh, kw, C, F]``, bias, names and weights (Matterport's files load unchanged) whose ``call`` is
``reshape(x, [N, kh * kw * C]) @ reshape(kernel, [kh * kw * C, F])``: the same sum, in another order.

On TensorFlow the input's gradient ``dy @ kernel^T`` is computed as ``(kernel @ dy^T)^T``: the same products,
but TensorFlow's CPU matmul with a transposed right operand of this shape is slow (``[200, 1024] x
[1024, 12544]``: 147 ms against 51 ms for the transposed form, measured by hand on this machine).
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
        outputs = _tf_matmul(flat, kernel) if keras.backend.backend() == "tensorflow" else ops.matmul(flat, kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        outputs = ops.reshape(outputs, (-1, 1, 1, filters))
        return outputs if self.activation is None else self.activation(outputs)


def _tf_matmul(x, kernel):
    """``x @ kernel`` with the input's gradient as ``(kernel @ dy^T)^T`` (see the module's note)."""
    import tensorflow as tf

    scope = tf.get_current_name_scope()  # named like TensorFlow's own gradients (see mrcnn.layers.conv)

    @tf.custom_gradient
    def matmul(x, kernel):
        def gradient(dy):
            with tf.name_scope(f"gradient_tape/{scope}/" if scope else "gradient_tape/"):
                return tf.transpose(tf.matmul(kernel, dy, transpose_b=True)), tf.matmul(x, dy, transpose_a=True)

        return tf.matmul(x, kernel), gradient

    return matmul(x, kernel)
