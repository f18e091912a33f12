"""LocalSelfAttention2D against a per-pixel NumPy loop written from the paper's formula."""

import keras
import numpy as np
import pytest

from attention import LocalSelfAttention2D


def naive_local_attention(x, wq, wk, wv, row_emb, col_emb, kernel_size, heads, strides):
    """Ramachandran et al. 2019, eq. 2-3, one output pixel and one head at a time.

    x: [H, W, C]; wq/wk/wv: [C, F]; row_emb/col_emb: [k, heads, d/2] indexed by offset + k//2.
    """
    height, width, _ = x.shape
    filters = wq.shape[1]
    d = filters // heads
    half = kernel_size // 2
    y = np.zeros((height, width, filters))
    for i in range(height):
        for j in range(width):
            for n in range(heads):
                sl = slice(n * d, (n + 1) * d)
                q = x[i, j] @ wq[:, sl]
                logits, vals = [], []
                for a in range(i - half, i + half + 1):
                    for b in range(j - half, j + half + 1):
                        if not (0 <= a < height and 0 <= b < width):
                            continue  # outside the image: not in the softmax at all
                        k_ab = x[a, b] @ wk[:, sl]
                        r = np.concatenate([row_emb[a - i + half, n], col_emb[b - j + half, n]])
                        logits.append(q @ k_ab + q @ r)
                        vals.append(x[a, b] @ wv[:, sl])
                logits = np.array(logits)
                p = np.exp(logits - logits.max())
                p /= p.sum()
                y[i, j, sl] = p @ np.array(vals)
    if strides == 2:
        y = y[: height // 2 * 2, : width // 2 * 2].reshape(height // 2, 2, width // 2, 2, filters).mean((1, 3))
    return y


def _layer(x, filters, kernel_size, heads, strides=1, seed=0):
    keras.utils.set_random_seed(seed)
    layer = LocalSelfAttention2D(filters, kernel_size=kernel_size, heads=heads, strides=strides)
    out = keras.ops.convert_to_numpy(layer(x))
    return layer, out


@pytest.mark.parametrize("kernel_size,heads,strides,shape", [
    (3, 1, 1, (5, 6)),
    (3, 2, 1, (6, 5)),
    (5, 4, 1, (7, 7)),
    (7, 2, 1, (6, 8)),   # the window is wider than the image: every pixel is a border pixel
    (3, 2, 2, (6, 8)),
    (5, 1, 2, (7, 9)),   # odd sides: the pooling drops the last row and column, as Keras' "valid" does
])
def test_matches_the_naive_per_pixel_loop(kernel_size, heads, strides, shape):
    rng = np.random.default_rng(kernel_size * 10 + heads)
    channels, filters = 3, 4 * heads
    x = rng.normal(size=(2,) + shape + (channels,)).astype("float32")
    layer, out = _layer(x, filters, kernel_size, heads, strides)
    weights = {w.path.split("/")[-1]: keras.ops.convert_to_numpy(w).astype(np.float64) for w in layer.weights}
    assert out.shape == (2, shape[0] // strides, shape[1] // strides, filters)
    for b in range(2):
        expected = naive_local_attention(x[b].astype(np.float64), weights["query_kernel"], weights["key_kernel"],
                                         weights["value_kernel"], weights["row_embeddings"],
                                         weights["col_embeddings"], kernel_size, heads, strides)
        np.testing.assert_allclose(out[b], expected, atol=1e-5, rtol=1e-5)


def test_heads_are_real_dot_products_over_their_channels():
    """The elementwise q*k bug makes every channel its own softmax; real heads share one per group."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 5, 5, 3)).astype("float32")
    layer, out = _layer(x, 4, 3, heads=1)
    w = {v.path.split("/")[-1]: keras.ops.convert_to_numpy(v).astype(np.float64) for v in layer.weights}
    # With one head, the attention weights are the same for all output channels: out = P @ V.
    v = x[0].astype(np.float64) @ w["value_kernel"]
    q = x[0, 2, 2] @ w["query_kernel"]
    keys = x[0, 1:4, 1:4].reshape(9, 3) @ w["key_kernel"]
    r = np.array([np.concatenate([w["row_embeddings"][a, 0], w["col_embeddings"][b, 0]])
                  for a in range(3) for b in range(3)])
    logits = keys @ q + r @ q
    p = np.exp(logits - logits.max())
    p /= p.sum()
    np.testing.assert_allclose(out[0, 2, 2], p @ v[1:4, 1:4].reshape(9, 4), atol=1e-5)


def test_translation_equivariant_away_from_borders():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 12, 12, 3)).astype("float32")
    layer, out = _layer(x, 8, 3, heads=2)
    shifted = np.roll(x, (2, 3), axis=(1, 2))
    out_shifted = keras.ops.convert_to_numpy(layer(shifted))
    # Pixels whose window, before and after the shift, lies inside the image and not on wrapped content.
    np.testing.assert_allclose(out_shifted[0, 4:11, 5:11], out[0, 2:9, 2:8], atol=1e-5)


def test_output_depends_only_on_its_window():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 11, 11, 3)).astype("float32")
    layer, out = _layer(x, 4, 5, heads=2)
    changed = x.copy()
    window = np.zeros((11, 11), bool)
    window[3:8, 3:8] = True                    # the 5x5 window of pixel (5, 5)
    changed[0][~window] = rng.normal(size=changed[0][~window].shape)
    out_changed = keras.ops.convert_to_numpy(layer(changed))
    np.testing.assert_allclose(out_changed[0, 5, 5], out[0, 5, 5], atol=1e-6)
    assert not np.allclose(out_changed[0, 5, 7], out[0, 5, 7])   # its neighbour sees changed pixels


@pytest.mark.parametrize("kernel_size", [3, 5, 7, 9])
def test_parameter_count_only_the_embeddings_grow_with_the_kernel(kernel_size):
    channels, filters, heads = 16, 32, 8
    layer = LocalSelfAttention2D(filters, kernel_size=kernel_size, heads=heads)
    layer.build((None, 10, 10, channels))
    sizes = {w.path.split("/")[-1]: int(np.prod(w.shape)) for w in layer.weights}
    assert sizes["query_kernel"] == sizes["key_kernel"] == sizes["value_kernel"] == channels * filters
    assert sizes["row_embeddings"] == sizes["col_embeddings"] == kernel_size * filters // 2
    assert layer.count_params() == 3 * channels * filters + kernel_size * filters
    # A k x k convolution of the same shape, for comparison: k*k*C*F weights.
    conv = keras.layers.Conv2D(filters, kernel_size, use_bias=False)
    conv.build((None, 10, 10, channels))
    if kernel_size >= 3:
        assert layer.count_params() < conv.count_params()


def test_config_round_trip_and_argument_errors():
    layer = LocalSelfAttention2D(16, kernel_size=5, heads=4, strides=2, name="attn")
    clone = LocalSelfAttention2D.from_config(layer.get_config())
    assert (clone.filters, clone.kernel_size, clone.heads, clone.strides, clone.name) == (16, 5, 4, 2, "attn")
    x = np.zeros((1, 8, 8, 3), "float32")
    model = keras.Sequential([keras.Input((8, 8, 3)), LocalSelfAttention2D(8, 3, 2)])
    restored = keras.Sequential.from_config(model.get_config())
    assert restored(x).shape == (1, 8, 8, 8)
    for kwargs, match in [(dict(filters=10, heads=4), "multiple"), (dict(filters=6, heads=2), "even"),
                          (dict(filters=8, heads=2, kernel_size=4), "odd"),
                          (dict(filters=8, heads=2, strides=3), "strides")]:
        with pytest.raises(ValueError, match=match):
            LocalSelfAttention2D(**kwargs)
