"""LocalSelfAttention2D against a per-pixel NumPy loop written from the paper's formula."""

import keras
import numpy as np
import pytest

from attention import LocalSelfAttention2D

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)


def naive_local_attention(x, wq, wk, wv, row_emb, col_emb, kernel_size, heads, strides):
    """Ramachandran et al. 2019, eq. 2-3, one output pixel and one head at a time.

    x: [H, W, C]; wq/wk/wv: [C, F] (full projections), or [heads, C/heads, F/heads] (grouped: head n
    projects input channels n*C/heads..(n+1)*C/heads with its own matrix); row_emb/col_emb: [k, heads, d/2]
    indexed by offset + k//2.
    """
    height, width, channels = x.shape
    if wq.ndim == 3:   # grouped: the same as full projections with a block-diagonal matrix
        wq, wk, wv = (block_diagonal(w) for w in (wq, wk, wv))
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


def block_diagonal(w):
    """[heads, C/heads, d] per-head matrices as the [C, heads*d] matrix that applies them to the groups."""
    heads, cin, d = w.shape
    full = np.zeros((heads * cin, heads * d))
    for n in range(heads):
        full[n * cin:(n + 1) * cin, n * d:(n + 1) * d] = w[n]
    return full


def _layer(x, filters, kernel_size, heads, strides=1, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    layer = LocalSelfAttention2D(filters, kernel_size=kernel_size, heads=heads, strides=strides, **kwargs)
    out = keras.ops.convert_to_numpy(layer(x))
    return layer, out


@pytest.mark.parametrize("projection", ["grouped", "full"])
@pytest.mark.parametrize("kernel_size,heads,strides,shape,block_size", [
    (1, 2, 1, (5, 6), 2),    # a 1x1 window: no halo, each pixel attends to itself only
    (3, 1, 1, (5, 6), 8),
    (3, 2, 1, (6, 5), 2),    # several query blocks, the last ones partly outside the image
    (5, 4, 1, (7, 7), 4),
    (5, 2, 1, (11, 9), 4),   # 3x3 blocks whose halos overlap
    (7, 2, 1, (6, 8), 8),    # the window is wider than the image: every pixel is a border pixel
    (7, 2, 1, (13, 10), 3),  # a block smaller than the window: raised to kernel_size - 1
    (3, 2, 2, (6, 8), 8),
    (5, 1, 2, (7, 9), 8),    # odd sides: the pooling drops the last row and column, as Keras' "valid" does
])
def test_matches_the_naive_per_pixel_loop(kernel_size, heads, strides, shape, block_size, projection):
    rng = np.random.default_rng(kernel_size * 10 + heads)
    channels = 3 if projection == "full" else 2 * heads
    filters = 4 * heads
    x = rng.normal(size=(2,) + shape + (channels,)).astype("float32")
    layer, out = _layer(x, filters, kernel_size, heads, strides, projection=projection, block_size=block_size)
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
    layer, out = _layer(x, 4, 3, heads=1, projection="full")
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
    x = rng.normal(size=(1, 12, 12, 4)).astype("float32")
    layer, out = _layer(x, 8, 3, heads=2, block_size=4)
    shifted = np.roll(x, (2, 3), axis=(1, 2))
    out_shifted = keras.ops.convert_to_numpy(layer(shifted))
    # Pixels whose window, before and after the shift, lies inside the image and not on wrapped content.
    np.testing.assert_allclose(out_shifted[0, 4:11, 5:11], out[0, 2:9, 2:8], atol=1e-5)


def test_output_depends_only_on_its_window():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 11, 11, 4)).astype("float32")
    layer, out = _layer(x, 4, 5, heads=2)
    changed = x.copy()
    window = np.zeros((11, 11), bool)
    window[3:8, 3:8] = True                    # the 5x5 window of pixel (5, 5)
    changed[0][~window] = rng.normal(size=changed[0][~window].shape)
    out_changed = keras.ops.convert_to_numpy(layer(changed))
    np.testing.assert_allclose(out_changed[0, 5, 5], out[0, 5, 5], atol=1e-6)
    assert not np.allclose(out_changed[0, 5, 7], out[0, 5, 7])   # its neighbour sees changed pixels


@pytest.mark.parametrize("kernel_size", [3, 5, 7, 9])
def test_parameter_count_grouped_and_full(kernel_size):
    """Grouped: 3*C*F/N + k*F; full: 3*C*F + k*F (the docstring's formulas), here with C=16, F=32, N=8."""
    channels, filters, heads = 16, 32, 8
    counts = {}
    for projection in ("grouped", "full"):
        layer = LocalSelfAttention2D(filters, kernel_size=kernel_size, heads=heads, projection=projection)
        layer.build((None, 10, 10, channels))
        sizes = {w.path.split("/")[-1]: int(np.prod(w.shape)) for w in layer.weights}
        per_projection = channels * filters // heads if projection == "grouped" else channels * filters
        assert sizes["query_kernel"] == sizes["key_kernel"] == sizes["value_kernel"] == per_projection
        assert sizes["row_embeddings"] == sizes["col_embeddings"] == kernel_size * filters // 2
        counts[projection] = layer.count_params()
    assert counts["grouped"] == 3 * 16 * 32 // 8 + kernel_size * 32 == 192 + 32 * kernel_size
    assert counts["full"] == 3 * 16 * 32 + kernel_size * 32 == 1536 + 32 * kernel_size
    # A k x k convolution of the same shape, for comparison: k*k*C*F weights.
    conv = keras.layers.Conv2D(filters, kernel_size, use_bias=False)
    conv.build((None, 10, 10, channels))
    assert counts["grouped"] < counts["full"] < conv.count_params()


def test_stage4_of_resnet50_parameter_counts():
    """The layer that replaces res4*_branch2b in ResNet-50 (256 -> 256 channels, k=7, 8 heads)."""
    grouped = LocalSelfAttention2D(256, kernel_size=7, heads=8)
    full = LocalSelfAttention2D(256, kernel_size=7, heads=8, projection="full")
    for layer in (grouped, full):
        layer.build((None, 16, 16, 256))
    assert grouped.count_params() == 3 * 256 * 32 + 7 * 256 == 26_368
    assert full.count_params() == 3 * 256 * 256 + 7 * 256 == 198_400


def test_config_round_trip_and_argument_errors():
    layer = LocalSelfAttention2D(16, kernel_size=5, heads=4, strides=2, projection="full", block_size=6,
                                 name="attn")
    clone = LocalSelfAttention2D.from_config(layer.get_config())
    assert (clone.filters, clone.kernel_size, clone.heads, clone.strides, clone.projection, clone.block_size,
            clone.name) == (16, 5, 4, 2, "full", 6, "attn")
    assert LocalSelfAttention2D(16).projection == "grouped"
    x = np.zeros((1, 8, 8, 4), "float32")
    model = keras.Sequential([keras.Input((8, 8, 4)), LocalSelfAttention2D(8, 3, 2)])
    restored = keras.Sequential.from_config(model.get_config())
    assert restored(x).shape == (1, 8, 8, 8)
    for kwargs, match in [(dict(filters=10, heads=4), "multiple"), (dict(filters=6, heads=2), "even"),
                          (dict(filters=8, heads=2, kernel_size=4), "odd"),
                          (dict(filters=8, heads=2, strides=3), "strides"),
                          (dict(filters=8, heads=2, projection="dense"), "projection='dense'"),
                          (dict(filters=8, heads=2, block_size=0), "block_size=0")]:
        with pytest.raises(ValueError, match=match):
            LocalSelfAttention2D(**kwargs)
    # grouped: 6 input channels do not split into 4 heads; the message names both
    with pytest.raises(ValueError, match="6 input channels into heads=4"):
        LocalSelfAttention2D(8, 3, heads=4)(np.zeros((1, 5, 5, 6), "float32"))
    assert LocalSelfAttention2D(8, 3, heads=4, projection="full")(np.zeros((1, 5, 5, 6), "float32")).shape == \
        (1, 5, 5, 8)


@pytest.mark.parametrize("policy,tolerance", [("mixed_bfloat16", 0.05), ("mixed_float16", 0.01)])
def test_mixed_precision_matches_float32(policy, tolerance):
    """16-bit logits: the mask value stays finite (float16's is -3e4, not an overflowing -1e9)."""
    x = np.random.default_rng(4).normal(size=(2, 9, 11, 16)).astype("float32")
    low = LocalSelfAttention2D(16, 7, heads=8, dtype=policy)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = keras.ops.convert_to_numpy(keras.ops.cast(low(x), "float32"))
    reference = LocalSelfAttention2D(16, 7, heads=8)
    reference.build(x.shape)
    reference.set_weights(low.get_weights())
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(reference(x)), atol=tolerance)
