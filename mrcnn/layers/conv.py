"""Keras's ``Conv2D`` with cheaper gradients for stride-1 convolutions on TensorFlow's CPU kernels.

A training step spends most of its time in convolution gradients, and TensorFlow's CPU kernels for them
(``Conv2DBackpropInput``, ``Conv2DBackpropFilter``) are slower than the same sums written as a forward
convolution or as matrix products (``python benchmarks/bench_conv_grad.py``). For a stride-1 ``same``
convolution ``y = x * K`` (kernel ``[kh, kw, C, F]``, odd sizes):

- the input's gradient is a forward convolution of ``dy`` with the kernel flipped in space and transposed in
  its channels (``[kh, kw, F, C]``); for a 1x1 kernel, one matrix product ``dy @ K^T``;
- the kernel's gradient, tap by tap, is ``dK[i, j] = x_ij^T @ dy`` where ``x_ij`` is the zero-padded input
  shifted by the tap: one ``[C, N*H*W] x [N*H*W, F]`` product per tap (``kh * kw`` in all). On many small
  maps (the mask head's 14x14 ROIs) TensorFlow's own kernel is the faster one and is kept.

:class:`Conv2D` is a ``keras.layers.Conv2D`` (same arguments, weights, names and forward op) that uses these
gradients where they apply: TensorFlow backend, no GPU visible (cuDNN's gradients are left alone), stride
1, dilation 1, one group, channels last, odd kernel, ``same`` padding (or a 1x1 kernel), and at least
``MIN_POSITIONS`` positions (batch x height x width) where the traced shape says. Any other convolution, and
every other backend, runs Keras's own ``convolution_op``. The gradients are the same sums
in another order: equal to TensorFlow's within float rounding (tests/layers/test_conv.py).
"""

from __future__ import annotations

import keras
from keras import layers, ops

# below this many positions in all (batch x height x width, shapes known when traced), the layer keeps Keras's
# path: the gain there is a few milliseconds and every custom gradient adds graph ops to trace before the first
# step (ResNet's stages 4 and 5 at 512x512 stay as they were; the mask head, whose ROI count is only known when
# it runs, takes the custom gradients)
MIN_POSITIONS = 64 * 64
# below this many output positions per map (static shapes), TensorFlow's Conv2DBackpropFilter is kept:
# with many small maps (the mask head: ROIs x 14 x 14) it beats one product per tap
MIN_POSITIONS_FOR_TAPS = 32 * 32


@keras.saving.register_keras_serializable(package="mrcnn")
class Conv2D(layers.Conv2D):
    """``keras.layers.Conv2D`` whose stride-1 gradients on TensorFlow's CPU kernels are computed as the
    module's note says; everything else (weights, forward op, other configurations and backends) is
    Keras's."""

    def convolution_op(self, inputs, kernel):
        if self._tf_cpu_gradients(inputs.shape):
            return tf_conv2d_same(inputs, ops.cast(kernel, inputs.dtype))
        return super().convolution_op(inputs, kernel)

    def _tf_cpu_gradients(self, shape):
        kernel = tuple(self.kernel_size)
        if (keras.backend.backend() != "tensorflow" or tuple(self.strides) != (1, 1)
                or tuple(self.dilation_rate) != (1, 1) or self.groups != 1 or self.data_format != "channels_last"
                or any(k % 2 == 0 for k in kernel) or (self.padding != "same" and kernel != (1, 1))):
            return False
        if None not in shape[:3] and shape[0] * shape[1] * shape[2] < MIN_POSITIONS:
            return False
        import tensorflow as tf

        return not tf.config.list_logical_devices("GPU")


def tf_conv2d_same(x, kernel):
    """TensorFlow's stride-1 ``same`` convolution of ``x`` ``[N, H, W, C]`` by ``kernel`` ``[kh, kw, C, F]``
    (odd sizes), with the gradients of the module's note."""
    import tensorflow as tf

    # the gradient's ops are named like TensorFlow's own ("gradient_tape/<layer scope>/..."), so profiles
    # (benchmarks/stage_profile.py) count them as the layer's backward pass
    scope = tf.get_current_name_scope()

    @tf.custom_gradient
    def conv(x, kernel):
        def gradient(dy):
            with tf.name_scope(f"gradient_tape/{scope}/" if scope else "gradient_tape/"):
                return _input_gradient(dy, kernel, tf.shape(x)), _kernel_gradient(x, dy, kernel)

        return tf.nn.conv2d(x, kernel, 1, "SAME"), gradient

    return conv(x, kernel)


def _input_gradient(dy, kernel, x_shape):
    import tensorflow as tf

    kh, kw, channels, filters = kernel.shape
    if (kh, kw) == (1, 1):
        # the transposed kernel as its own tensor: TensorFlow's CPU matmul with transpose_b is slower
        dx = tf.matmul(tf.reshape(dy, (-1, filters)), tf.transpose(tf.reshape(kernel, (channels, filters))))
        return tf.reshape(dx, x_shape)
    flipped = tf.transpose(tf.reverse(kernel, axis=(0, 1)), (0, 1, 3, 2))
    return tf.nn.conv2d(dy, flipped, 1, "SAME")


def _kernel_gradient(x, dy, kernel):
    import tensorflow as tf

    kh, kw, channels, filters = kernel.shape
    rows = tf.reshape(dy, (-1, filters))
    if (kh, kw) == (1, 1):
        return tf.reshape(tf.matmul(tf.reshape(x, (-1, channels)), rows, transpose_a=True), kernel.shape)
    height, width = x.shape[1], x.shape[2]
    if height is not None and width is not None and height * width < MIN_POSITIONS_FOR_TAPS:
        return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel), out_backprop=dy,
                                               strides=(1, 1, 1, 1), padding="SAME")
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = tf.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    if height is None or width is None:
        height, width = tf.shape(x)[1], tf.shape(x)[2]
    # with static sizes each tap is one Slice of constant bounds (a few graph ops: fewer to trace and optimize)
    flat = tf.constant((-1, channels))
    taps = [tf.matmul(tf.reshape(tf.slice(padded, (0, i, j, 0), (-1, height, width, -1)), flat), rows,
                      transpose_a=True) for i in range(kh) for j in range(kw)]
    return tf.reshape(tf.stack(taps), kernel.shape)
