"""Stand-alone local self-attention (Ramachandran et al. 2019), a Keras 3 layer in ``keras.ops``.

For each pixel ``ij`` of the input ``x`` (``[B, H, W, C]``) and each of the ``N = heads`` heads::

    q_ij = W_Q^n x^n_ij,   k_ab = W_K^n x^n_ab,   v_ab = W_V^n x^n_ab        (1x1 projections, no bias)
    y^n_ij = sum_{ab in N_k(i, j)} softmax_ab(q_ij . k_ab + q_ij . r_{a-i, b-j}) v_ab

over the ``k x k`` memory block ``N_k(i, j)`` centred on the pixel; the heads' outputs ``y^n`` (depth
``d = filters / N`` each) are concatenated.

Projections (``projection=``):

* ``"grouped"`` (the default, the paper's sec. 3.1): the input channels are split depthwise into N groups
  ``x^n`` of ``C / N`` channels, and head n has its own ``W_Q^n, W_K^n, W_V^n`` of shape ``(C/N, d)``:
  ``3 * C * filters / N`` projection weights.
* ``"full"``: every head projects all C input channels, ``W_Q, W_K, W_V`` of shape ``(C, filters)`` split
  by output channel: ``3 * C * filters`` weights.

Relative positions: ``r_{a-i, b-j}`` is the concatenation of a row-offset embedding (``d/2`` values for
offset ``a - i``) and a column-offset embedding (``d/2`` values for ``b - j``), one pair of tables per
head: ``2 * kernel_size * N * d/2 = kernel_size * filters`` weights, whatever the projection. So a layer
holds ``3 * C * filters / N + kernel_size * filters`` parameters when grouped and
``3 * C * filters + kernel_size * filters`` when full (a k x k convolution: ``k*k*C*filters`` + bias).
Neighbours outside the image are removed from the softmax (their logits are replaced by a large negative
number), not treated as zero keys. With ``strides=2`` the attention runs at stride 1 and is followed by
2x2 average pooling, as in the paper.

Computation, blocked: the queries are cut into ``b x b`` blocks (``block_size``, at least ``k - 1``), and
each block attends to its ``(b + k - 1)^2`` halo of keys and values with two batched matrix products
(logits ``q K^T`` and output ``P V``); positions outside a query's own window get the large negative logit.
That computes ``(b + k - 1)^2 / k^2`` times the logits the formula needs (4x at b=8, k=7) but as dense
matmuls, and materialises the halos (``(b + k - 1)^2 / b^2`` times the keys and values) instead of one
shifted copy per window position; the backward pass is the matmuls' and the slices' own gradients. The
relative logits are ``q_row . row_emb`` and ``q_col . col_emb`` (k values each per pixel), spread over the
halo by a constant 0/1 matrix. Static shapes throughout; H and W must be known when the layer is called.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

PROJECTIONS = ("grouped", "full")


def _masked_logit(dtype):
    """The logit of a position outside the window or the image: finite, so no row of the softmax is NaN."""
    return -3.0e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1.0e9


def _part(tensor, start, size, axis):
    """``tensor[start:start + size]`` along ``axis``, as a split: its gradient is a concatenation, which
    TensorFlow computes several times faster than a strided slice's."""
    total = tensor.shape[axis]
    if size <= 0:
        raise ValueError(f"_part: empty part ({start}, {size}) of an axis of {total}")
    if start == 0 and size == total:
        return tensor
    cuts = [c for c in (start, start + size) if 0 < c < total]
    pieces = ops.split(tensor, cuts, axis=axis)
    return pieces[1 if start > 0 else 0]


@keras.saving.register_keras_serializable(package="attention")
class LocalSelfAttention2D(keras.layers.Layer):
    """Local multi-head self-attention over ``kernel_size x kernel_size`` windows; see the module docstring.

    filters: output channels (divisible by ``heads``, and the head depth even); kernel_size: odd window
    side; heads: attention heads; strides: 1, or 2 for attention followed by 2x2 average pooling;
    projection: ``"grouped"`` (the paper's per-head ``(C/N, d)`` matrices; C must be divisible by heads)
    or ``"full"`` (``(C, filters)`` matrices); block_size: side of the query blocks of the computation
    (raised to ``kernel_size - 1`` if smaller; it changes speed and memory, never the result).
    """

    def __init__(self, filters, kernel_size=7, heads=8, strides=1, projection="grouped", block_size=8, **kwargs):
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
        if projection not in PROJECTIONS:
            raise ValueError(f"LocalSelfAttention2D: projection={projection!r} must be one of {PROJECTIONS}")
        if int(block_size) < 1:
            raise ValueError(f"LocalSelfAttention2D: block_size={block_size} must be a positive integer")
        self.filters, self.kernel_size, self.heads, self.strides = filters, kernel_size, heads, strides
        self.projection, self.block_size = projection, int(block_size)
        self.depth = filters // heads

    def build(self, input_shape):
        channels = int(input_shape[-1])
        init = keras.initializers.VarianceScaling(1.0, "fan_in", "normal")
        if self.projection == "grouped":
            if channels % self.heads:
                raise ValueError(f"LocalSelfAttention2D {self.name!r}: projection='grouped' splits the "
                                 f"{channels} input channels into heads={self.heads} groups: channels must be "
                                 f"divisible by heads (or use projection='full')")
            shape = (self.heads, channels // self.heads, self.depth)   # [head, C/N, d]
        else:
            shape = (channels, self.filters)
        self.query_kernel = self.add_weight(name="query_kernel", shape=shape, initializer=init)
        self.key_kernel = self.add_weight(name="key_kernel", shape=shape, initializer=init)
        self.value_kernel = self.add_weight(name="value_kernel", shape=shape, initializer=init)
        emb = keras.initializers.RandomNormal(stddev=1.0)
        half = self.depth // 2
        # [offset (row a-i or column b-j, from -k//2 to k//2), head, half depth]
        self.row_embeddings = self.add_weight(name="row_embeddings", shape=(self.kernel_size, self.heads, half),
                                              initializer=emb)
        self.col_embeddings = self.add_weight(name="col_embeddings", shape=(self.kernel_size, self.heads, half),
                                              initializer=emb)

    def _project(self, inputs, kernel):
        """``[B, H, W, C]`` -> ``[B, H, W, heads, depth]``."""
        height, width = inputs.shape[1], inputs.shape[2]
        if self.projection == "grouped":
            x = ops.reshape(inputs, (-1, height, width, self.heads, inputs.shape[-1] // self.heads))
            return ops.einsum("bhwnc,ncd->bhwnd", x, kernel)
        return ops.reshape(ops.einsum("bhwc,cf->bhwf", inputs, kernel), (-1, height, width, self.heads, self.depth))

    def _geometry(self, height, width):
        block = max(self.block_size, self.kernel_size - 1)
        return block, -(-height // block), -(-width // block)

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            raise ValueError(f"LocalSelfAttention2D {self.name!r}: needs a static height and width, got input "
                             f"shape {tuple(inputs.shape)}")
        n, d = self.heads, self.depth
        block, rows, cols = self._geometry(height, width)
        q = self._project(inputs, self.query_kernel)
        q = ops.pad(q, [[0, 0], [0, rows * block - height], [0, cols * block - width], [0, 0], [0, 0]])
        q = ops.reshape(q, (-1, rows, block, cols, block, n, d))
        q = ops.reshape(ops.transpose(q, (0, 5, 1, 3, 2, 4, 6)), (-1, n, rows * cols, block * block, d))
        keys = self._halos(self._project(inputs, self.key_kernel), block, rows, cols)
        values = self._halos(self._project(inputs, self.value_kernel), block, rows, cols)
        # [B, heads, blocks, queries of a block, halo positions]: q . k, plus q . r and the mask
        logits = ops.einsum("bnxqd,bnxkd->bnxqk", q, keys)
        logits = self._add_relative_logits(logits, q, height, width, block, rows, cols)
        out = ops.einsum("bnxqk,bnxkd->bnxqd", ops.softmax(logits, axis=-1), values)
        out = ops.reshape(out, (-1, n, rows, cols, block, block, d))
        out = ops.reshape(ops.transpose(out, (0, 2, 4, 3, 5, 1, 6)), (-1, rows * block, cols * block, self.filters))
        out = _part(_part(out, 0, height, 1), 0, width, 2)
        if self.strides == 2:
            out = ops.average_pool(out, pool_size=2, strides=2, padding="valid")
        return out

    def _halos(self, tensor, block, rows, cols):
        """``[B, H, W, heads, d]`` -> each query block's ``(block + k - 1)^2`` neighbourhood,
        ``[B, heads, blocks, halo * halo, d]``, zero outside the image."""
        pad = self.kernel_size // 2
        n, d, halo = self.heads, self.depth, block + 2 * pad
        height, width = tensor.shape[1], tensor.shape[2]
        # Padded so that block r's halo rows are padded rows [r*block, r*block + halo); rows*block + block
        # rows in all, so the rows after each block can be read as the next block's first 2*pad rows.
        padded = ops.pad(tensor, [[0, 0], [pad, rows * block + block - pad - height],
                                  [pad, cols * block + block - pad - width], [0, 0], [0, 0]])
        wide = cols * block + block
        tensor = ops.reshape(_part(padded, 0, rows * block, 1), (-1, rows, block, wide, n, d))
        if pad:   # each block's rows, then the first 2*pad rows of the next block's
            tail = ops.reshape(_part(padded, block, rows * block, 1), (-1, rows, block, wide, n, d))
            tensor = ops.concatenate([tensor, _part(tail, 0, 2 * pad, 2)], axis=2)
        columns = tensor                                                   # [B, rows, halo, wide, n, d]
        tensor = ops.reshape(_part(columns, 0, cols * block, 3), (-1, rows, halo, cols, block, n, d))
        if pad:   # the same along the columns
            tail = ops.reshape(_part(columns, block, cols * block, 3), (-1, rows, halo, cols, block, n, d))
            tensor = ops.concatenate([tensor, _part(tail, 0, 2 * pad, 4)], axis=4)
        tensor = ops.transpose(tensor, (0, 5, 1, 3, 2, 4, 6))
        return ops.reshape(tensor, (-1, n, rows * cols, halo * halo, d))

    def _add_relative_logits(self, logits, q, height, width, block, rows, cols):
        """``logits + q . r``, with the large negative logit where the halo position is outside the query's
        window or the image.

        ``q . r_{a-i, b-j} = q_row . row_emb[a-i] + q_col . col_emb[b-j]`` (the halves of q): each is
        computed for the k offsets, placed on the block's halo rows / columns by a constant 0/1 matrix, and
        given the mask as a bias of rows / columns (a halo position is valid when both its row and its column
        are), so the [.., halo^2] logits take one broadcast sum. Queries in the padding below or right of the
        image (cut off afterwards) see their whole window, so no softmax row is all masked.
        """
        k, pad = self.kernel_size, self.kernel_size // 2
        halo = block + 2 * pad
        place = np.zeros((block, k, halo), np.float32)   # place[i, o, a] = 1: halo row a is offset o - pad
        for i in range(block):
            place[i, np.arange(k), i + np.arange(k)] = 1.0
        place = ops.cast(place, q.dtype)
        masked = _masked_logit(q.dtype)
        row_bias = self._bias(height, block, rows, masked)   # [rows, block (query row i), halo row]
        col_bias = self._bias(width, block, cols, masked)    # [cols, block (query column j), halo column]
        q_row, q_col = ops.split(q, 2, axis=-1)
        by_row = ops.einsum("bnxqh,onh->bnxqo", q_row, ops.cast(self.row_embeddings, q.dtype))
        by_col = ops.einsum("bnxqh,onh->bnxqo", q_col, ops.cast(self.col_embeddings, q.dtype))
        # (TensorFlow broadcasts at most 5 dimensions: the reshapes keep every broadcast at 4.)
        # query (i, j), halo row a: row i's placement; the row mask of block row r, the same for every j
        by_row = ops.einsum("yijo,ioa->yija", ops.reshape(by_row, (-1, block, block, k)), place)
        by_row = ops.reshape(by_row, (-1, rows, cols, block * block * halo)) + ops.convert_to_tensor(
            np.broadcast_to(row_bias[:, None, :, None, None, :], (rows, 1, block, block, 1, halo)).reshape(
                1, rows, 1, block * block * halo), dtype=q.dtype)
        # query (i, j), halo column c: column j's placement; the column mask of block column c
        by_col = ops.einsum("yjo,joa->yja", ops.reshape(by_col, (-1, block, k)), place)
        by_col = ops.reshape(by_col, (-1, rows, cols, block * block * halo)) + ops.convert_to_tensor(
            np.broadcast_to(col_bias[None, :, None, :, :], (1, cols, block, block, halo)).reshape(
                1, 1, cols, block * block * halo), dtype=q.dtype)
        by_row = ops.reshape(by_row, (-1, halo, 1))
        by_col = ops.reshape(by_col, (-1, 1, halo))
        logits = ops.reshape(logits, (-1, halo, halo)) + by_row + by_col
        return ops.reshape(logits, (-1, self.heads, rows * cols, block * block, halo * halo))

    def _bias(self, size, block, count, masked):
        """``[count, block, halo]``: 0 where halo row (or column) a of block r is in query i's window and in
        the image (``size`` rows), or query i is outside the image; else ``masked``."""
        pad = self.kernel_size // 2
        halo = block + 2 * pad
        i = np.arange(block)[None, :, None]
        a = np.arange(halo)[None, None, :]
        r = np.arange(count)[:, None, None]
        key, query = r * block - pad + a, r * block + i
        ok = (np.abs(a - pad - i) <= pad) & (((key >= 0) & (key < size)) | (query >= size))
        return np.where(ok, 0.0, masked).astype(np.float32)

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape[0], input_shape[1], input_shape[2]
        if self.strides == 2:
            height = None if height is None else height // 2
            width = None if width is None else width // 2
        return (batch, height, width, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "heads": self.heads, "strides": self.strides, "projection": self.projection,
                "block_size": self.block_size}
