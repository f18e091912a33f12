import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from mrcnn.layers.pooled_conv import PooledConv2D


@pytest.mark.parametrize("kernel,activation", [(7, None), (1, "relu")])
def test_pooled_conv_equals_the_convolution_forward_and_backward(kernel, activation):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, kernel, kernel, 16)).astype(np.float32)
    conv = layers.Conv2D(8, kernel, padding="valid", activation=activation)
    pooled = PooledConv2D(8, kernel, padding="valid", activation=activation)
    conv.build(x.shape)
    pooled.build(x.shape)
    pooled.set_weights(conv.get_weights())  # the same kernel [kh, kw, C, F] and bias
    assert [w.shape for w in pooled.weights] == [w.shape for w in conv.weights]
    assert [w.path.split("/")[-1] for w in pooled.weights] == ["kernel", "bias"]
    outputs, gradients = [], []
    for layer in (conv, pooled):
        tensor = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            y = layer(tensor)
            loss = tf.reduce_sum(y * tf.range(1.0, 9.0))
        outputs.append(y.numpy())
        gradients.append([g.numpy() for g in tape.gradient(loss, [tensor] + layer.trainable_weights)])
    assert outputs[1].shape == (6, 1, 1, 8)
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    for got, expected in zip(gradients[1], gradients[0]):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_pooled_conv_refuses_an_input_its_kernel_does_not_cover():
    with pytest.raises(ValueError, match=r"kernel \(7, 7\) must cover the input.*\(9, 9\)"):
        PooledConv2D(4, 7)(keras.Input((9, 9, 3)))
    with pytest.raises(ValueError, match="padding='valid'"):
        PooledConv2D(4, 7, padding="same")(keras.Input((7, 7, 3)))
