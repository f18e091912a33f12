"""Stand-alone local self-attention (Ramachandran et al. 2019), a Keras 3 layer in ``keras.ops``.

For each pixel ``ij`` of the input ``x`` (``[B, H, W, C]``)::

    q_ij = W_Q x_ij,   k_ab = W_K x_ab,   v_ab = W_V x_ab          (1x1 projections, no bias)
    y_ij = sum_{ab in N_k(i, j)} softmax_ab(q_ij . k_ab + q_ij . r_{a-i, b-j}) v_ab

over the ``k x k`` memory block ``N_k(i, j)`` centred on the pixel. With ``heads = N`` the ``filters``
channels of q, k, v are split into N groups of depth ``d = filters / N``; each head takes its own dot
products over its own d channels and its own softmax, and the heads' outputs are concatenated.

Relative positions: ``r_{a-i, b-j}`` is the concatenation of a row-offset embedding (``d/2`` values for
offset ``a - i``) and a column-offset embedding (``d/2`` values for ``b - j``), one pair of tables per
head. Neighbours outside the image are removed from the softmax (their logits are -inf), not treated as
zero keys. With ``strides=2`` the attention runs at stride 1 and is followed by 2x2 average pooling, as
in the paper.

Parameters: the projections hold ``3 * C * filters`` weights whatever the kernel size; only the
relative embeddings grow with it, ``2 * kernel_size * filters / 2 = kernel_size * filters`` weights.

Vectorised over pixels with ``k * k`` shifted views of the zero-padded keys and values (no per-pixel
loop); only the ``[B, H, W, k*k, heads]`` logits are materialised, never ``k*k`` copies of the keys or
values. Static shapes throughout.
"""

from __future__ import annotations

import keras
from keras import ops

NEG_INF = -1e9


@keras.saving.register_keras_serializable(package="attention")
class LocalSelfAttention2D(keras.layers.Layer):
    """Local multi-head self-attention over ``kernel_size x kernel_size`` windows; see the module docstring.

    filters: output channels (divisible by ``heads``, and the head depth even); kernel_size: odd window
    side; heads: attention heads; strides: 1, or 2 for attention followed by 2x2 average pooling.
    """

    def __init__(self, filters, kernel_size=7, heads=8, strides=1, **kwargs):
        super().__init__(**kwargs)
        filters, kernel_size, heads, strides = int(filters), int(kernel_size), int(heads), int(strides)
        if filters < 1 or heads < 1 or filters % heads:
            raise ValueError(f"LocalSelfAttention2D: filters={filters} must be a positive multiple of "
                             f"heads={heads}")
        if (filters // heads) % 2:
            raise ValueError(f"LocalSelfAttention2D: the head depth filters/heads={filters // heads} must be "
                             f"even (half for row offsets, half for column offsets)")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"LocalSelfAttention2D: kernel_size={kernel_size} must be a positive odd number")
        if strides not in (1, 2):
            raise ValueError(f"LocalSelfAttention2D: strides={strides} must be 1 or 2")
        self.filters, self.kernel_size, self.heads, self.strides = filters, kernel_size, heads, strides
        self.depth = filters // heads

    def build(self, input_shape):
        channels = int(input_shape[-1])
        init = keras.initializers.VarianceScaling(1.0, "fan_in", "normal")
        self.query_kernel = self.add_weight(name="query_kernel", shape=(channels, self.filters), initializer=init)
        self.key_kernel = self.add_weight(name="key_kernel", shape=(channels, self.filters), initializer=init)
        self.value_kernel = self.add_weight(name="value_kernel", shape=(channels, self.filters), initializer=init)
        emb = keras.initializers.RandomNormal(stddev=1.0)
        half = self.depth // 2
        # [offset (row a-i or column b-j, from -k//2 to k//2), head, half depth]
        self.row_embeddings = self.add_weight(name="row_embeddings", shape=(self.kernel_size, self.heads, half),
                                              initializer=emb)
        self.col_embeddings = self.add_weight(name="col_embeddings", shape=(self.kernel_size, self.heads, half),
                                              initializer=emb)

    def relative_embeddings(self):
        """``r`` as ``[k*k, heads, depth]``: row offset a-i major, column offset b-j minor."""
        k, half = self.kernel_size, self.depth // 2
        rows = ops.broadcast_to(self.row_embeddings[:, None], (k, k, self.heads, half))
        cols = ops.broadcast_to(self.col_embeddings[None, :], (k, k, self.heads, half))
        return ops.reshape(ops.concatenate([rows, cols], axis=-1), (k * k, self.heads, self.depth))

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        k, pad, n, d = self.kernel_size, self.kernel_size // 2, self.heads, self.depth
        q = ops.einsum("bhwc,cf->bhwf", inputs, self.query_kernel)
        keys = ops.einsum("bhwc,cf->bhwf", inputs, self.key_kernel)
        values = ops.einsum("bhwc,cf->bhwf", inputs, self.value_kernel)
        q = ops.reshape(q, (-1, height, width, n, d))
        padding = [[0, 0], [pad, pad], [pad, pad], [0, 0]]
        keys = ops.pad(keys, padding)
        values = ops.pad(values, padding)
        # 1 where a window position falls inside the image, per pixel and offset: [H, W, k*k]
        inside = ops.pad(ops.ones((height, width), dtype=inputs.dtype), padding[1:3])
        windows = [(a, b) for a in range(k) for b in range(k)]  # offsets (a - i + pad, b - j + pad)

        def shifted(tensor, a, b):
            return ops.reshape(tensor[:, a:a + height, b:b + width], (-1, height, width, n, d))

        # Content logits, one dot product over the head's d channels per window position: [B, H, W, k*k, N]
        logits = ops.stack([ops.sum(q * shifted(keys, a, b), axis=-1) for a, b in windows], axis=3)
        logits = logits + ops.einsum("bhwnd,knd->bhwkn", q, self.relative_embeddings())
        valid = ops.stack([inside[a:a + height, b:b + width] for a, b in windows], axis=-1)  # [H, W, k*k]
        logits = ops.where(valid[None, :, :, :, None] > 0, logits, ops.cast(NEG_INF, logits.dtype))
        weights = ops.softmax(logits, axis=3)
        out = None
        for index, (a, b) in enumerate(windows):
            term = weights[:, :, :, index, :, None] * shifted(values, a, b)
            out = term if out is None else out + term
        out = ops.reshape(out, (-1, height, width, self.filters))
        if self.strides == 2:
            out = ops.average_pool(out, pool_size=2, strides=2, padding="valid")
        return out

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[0], input_shape[1], input_shape[2]
        if self.strides == 2:
            height = None if height is None else height // 2
            width = None if width is None else width // 2
        return (batch, height, width, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "heads": self.heads, "strides": self.strides}
