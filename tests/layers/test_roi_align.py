import numpy as np
import pytest
from keras import ops

from mrcnn import ops as mops
from mrcnn.data.image_meta import compose_image_meta
from mrcnn.layers import PyramidROIAlign
from mrcnn.layers.roi_align import roi_levels

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)


@pytest.mark.parametrize("side, level", [(224, 4), (112, 3), (56, 2), (20, 2), (448, 5), (1000, 5),
                                         (160, 4), (150, 3)])
def test_roi_level_follows_the_fpn_rule(side, level):
    box = np.array([[0, 0, side / 1024, side / 1024]], np.float32)
    assert float(ops.convert_to_numpy(roi_levels(box, 1024.0, 1024.0))[0]) == level


def test_each_box_is_pooled_from_its_level():
    rng = np.random.default_rng(0)
    size = 256
    maps = [rng.normal(size=(2, size // s, size // s, 3)).astype(np.float32) for s in (4, 8, 16, 32)]
    boxes = np.array([[[0.1, 0.1, 0.2, 0.2], [0.0, 0.0, 0.9, 0.9], [0.3, 0.2, 0.6, 0.7]],
                      [[0.5, 0.5, 0.9, 0.6], [0.0, 0.0, 0.0, 0.0], [0.2, 0.2, 0.4, 0.4]]], np.float32)
    meta = np.stack([compose_image_meta(0, (size, size, 3), (size, size, 3), (0, 0, size, size), 1, [1, 1])] * 2)
    pooled = ops.convert_to_numpy(PyramidROIAlign((5, 5))(boxes, meta.astype(np.float32), maps))
    assert pooled.shape == (2, 3, 5, 5, 3)
    levels = ops.convert_to_numpy(roi_levels(boxes, size, size)).astype(int)
    for b in range(2):
        for i in range(3):
            fm = maps[levels[b, i] - 2][b:b + 1]
            expected = ops.convert_to_numpy(mops.crop_and_resize(fm, boxes[b, i][None], np.array([0]), (5, 5)))
            np.testing.assert_allclose(pooled[b, i], expected[0], atol=1e-5)


def test_output_shape_is_declared_not_traced():
    """The declared shape is the computed one (PyTorch's backend would otherwise infer it by running the crops
    on stand-in sizes: gigabytes for a ResNet-50 model)."""
    layer = PyramidROIAlign((7, 7))
    boxes = np.array([[[0.1, 0.1, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.2, 0.3, 0.25, 0.35]]], np.float32)
    meta = compose_image_meta(0, (64, 64, 3), (64, 64, 3), (0, 0, 64, 64), 1.0, np.zeros(4))[None]
    maps = [np.random.default_rng(s).normal(size=(1, 64 // 2 ** s, 64 // 2 ** s, 5)).astype(np.float32)
            for s in range(2, 6)]
    out = ops.convert_to_numpy(layer(boxes, meta, maps))
    declared = layer.compute_output_shape(boxes.shape, meta.shape, [m.shape for m in maps])
    assert out.shape == tuple(declared) == (1, 3, 7, 7, 5)
