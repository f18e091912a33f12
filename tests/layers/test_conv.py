import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from mrcnn.layers import conv as conv_module
from mrcnn.layers.conv import Conv2D


def _pair(x_shape, filters, kernel, seed=0, **kwargs):
    """keras.layers.Conv2D and mrcnn's Conv2D with the same weights (random bias too)."""
    rng = np.random.default_rng(seed)
    reference, ours = layers.Conv2D(filters, kernel, **kwargs), Conv2D(filters, kernel, **kwargs)
    reference.build(x_shape)
    ours.build(x_shape)
    reference.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in reference.weights])
    ours.set_weights(reference.get_weights())
    return reference, ours


def _forward_backward(layer, x, jit_compile=False, input_signature=None):
    """Output and gradients of ``sum(y * w)`` (a fixed, non-uniform ``w``) by input, kernel and bias, plus the
    op types of the traced step."""

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            weights = tf.reshape(tf.range(tf.size(y), dtype=y.dtype) % 7.0 - 3.0, tf.shape(y))
            loss = tf.reduce_sum(y * weights)
        return [y] + tape.gradient(loss, [x] + layer.trainable_weights)

    function = tf.function(step, jit_compile=jit_compile, input_signature=input_signature)
    values = [t.numpy() for t in function(tf.constant(x))]
    graph = function.get_concrete_function(*(input_signature or [tf.constant(x)])).graph
    return values, {op.type for op in graph.get_operations()}


CASES = [  # x shape, filters, kernel, kwargs: each at least MIN_POSITIONS positions
    ((1, 64, 66, 8), 6, 3, {"padding": "same", "activation": "relu"}),  # one product per tap (>= 32x32 maps)
    ((2, 48, 45, 5), 4, (3, 5), {"padding": "same"}),  # batch 2, odd rectangular kernel
    ((30, 14, 14, 8), 6, 3, {"padding": "same"}),  # many small maps: TensorFlow's filter gradient
    ((2, 48, 45, 16), 3, 1, {}),  # 1x1 ("valid" = "same"): matrix products
]


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("x_shape,filters,kernel,kwargs", CASES)
def test_conv_equals_keras_conv_forward_and_backward(x_shape, filters, kernel, kwargs, jit_compile):
    x = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
    reference, ours = _pair(x_shape, filters, kernel, **kwargs)
    expected, _ = _forward_backward(reference, x, jit_compile)
    got, op_types = _forward_backward(ours, x, jit_compile)
    assert [g.shape for g in got] == [e.shape for e in expected]
    np.testing.assert_array_equal(got[0], expected[0])  # the same forward op
    for g, e in zip(got[1:], expected[1:]):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * np.abs(e).max())
    assert x_shape[0] * x_shape[1] * x_shape[2] >= conv_module.MIN_POSITIONS
    if not jit_compile:  # the gradients are the module's, not TensorFlow's
        assert "Conv2DBackpropInput" not in op_types
        small_maps = x_shape[1] * x_shape[2] < conv_module.MIN_POSITIONS_FOR_TAPS and kernel != 1
        assert ("Conv2DBackpropFilter" in op_types) == small_maps


def test_conv_with_unknown_spatial_shape_takes_the_taps_and_matches():
    # the RPN's shared convolution runs inside a nested model whose input is [None, None, None, 256]
    x = np.random.default_rng(2).normal(size=(1, 34, 34, 4)).astype(np.float32)
    reference, ours = _pair(x.shape, 5, 3, padding="same")
    signature = [tf.TensorSpec((None, None, None, 4), tf.float32)]
    expected, _ = _forward_backward(reference, x, input_signature=signature)
    got, op_types = _forward_backward(ours, x, input_signature=signature)
    assert "Conv2DBackpropFilter" not in op_types and "Conv2DBackpropInput" not in op_types
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * np.abs(e).max())


@pytest.mark.parametrize("kwargs", [{"strides": 2}, {"dilation_rate": 2, "padding": "same"}, {"padding": "valid"},
                                    {"padding": "same"}])  # the last: fewer than MIN_POSITIONS positions
def test_other_convolutions_keep_tensorflows_gradients(kwargs):
    x = np.random.default_rng(3).normal(size=(1, 12, 12, 4)).astype(np.float32)
    reference, ours = _pair(x.shape, 3, 3, **kwargs)
    expected, _ = _forward_backward(reference, x)
    got, op_types = _forward_backward(ours, x)
    assert "Conv2DBackpropInput" in op_types or "Conv2DBackpropInputV2" in op_types or kwargs.get("dilation_rate")
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


def test_conv_gradients_under_bfloat16():
    x = np.random.default_rng(4).normal(size=(1, 64, 64, 8)).astype(np.float32)
    reference, ours = _pair(x.shape, 8, 3, padding="same", dtype="mixed_bfloat16")
    expected, _ = _forward_backward(reference, tf.cast(x, tf.bfloat16).numpy())
    got, _ = _forward_backward(ours, tf.cast(x, tf.bfloat16).numpy())
    assert got[0].dtype == expected[0].dtype and got[2].dtype == np.float32  # kernel gradient as its variable
    for g, e in zip(got, expected):
        g, e = np.asarray(g, np.float32), np.asarray(e, np.float32)
        np.testing.assert_allclose(g, e, rtol=0.05, atol=0.05 * np.abs(e).max())


def test_conv_config_round_trips():
    layer = Conv2D(4, 3, padding="same", name="fpn_p2")
    clone = Conv2D.from_config(layer.get_config())
    assert type(clone) is Conv2D and clone.name == "fpn_p2" and clone.padding == "same"


def test_gradient_ops_are_named_after_the_layer():
    # benchmarks/stage_profile.py counts ops under "gradient_tape/<model>/<layer>/" as that layer's backward pass
    x = tf.constant(np.random.default_rng(5).normal(size=(1, 64, 64, 4)).astype(np.float32))
    layer = Conv2D(3, 3, padding="same", name="fpn_p9")
    layer.build(x.shape)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x))
        return tape.gradient(loss, [x, layer.kernel])

    graph = step.get_concrete_function(x).graph
    gradient_ops = [op.name for op in graph.get_operations() if op.type in ("MatMul", "Conv2D")]
    assert len(gradient_ops) == 1 + 1 + 9  # forward, input gradient, one product per tap
    forward = [name for name in gradient_ops if not name.startswith("gradient_tape/")]
    assert len(forward) == 1 and forward[0].startswith("fpn_p9"), gradient_ops
    scope = forward[0].rsplit("/", 1)[0]  # the layer's scope, as TensorFlow made it unique ("fpn_p9_1")
    assert sum(name.startswith(f"gradient_tape/{scope}/") for name in gradient_ops) == 10, gradient_ops
