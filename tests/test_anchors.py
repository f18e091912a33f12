import numpy as np
import pytest

from mrcnn import utils
from mrcnn.config import Config


class CocoLike(Config):
    NAME = "coco_like"
    NUM_CLASSES = 81


def test_default_config_gives_261888_anchors():
    config = CocoLike()
    anchors = utils.generate_pyramid_anchors(
        config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, config.feature_shapes(),
        config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
    assert anchors.shape == (261888, 4)
    # The first anchor: P2 cell (0, 0), ratio 0.5, scale 32 -> h = 32/sqrt(.5), w = 32*sqrt(.5)
    h, w = 32 / np.sqrt(0.5), 32 * np.sqrt(0.5)
    np.testing.assert_allclose(anchors[0], [-h / 2, -w / 2, h / 2, w / 2])
    # The last anchor: P6 cell (15, 15) at stride 64, ratio 2, scale 512
    h, w = 512 / np.sqrt(2), 512 * np.sqrt(2)
    c = 15 * 64
    np.testing.assert_allclose(anchors[-1], [c - h / 2, c - w / 2, c + h / 2, c + w / 2])


def test_generate_anchors_hand_computed():
    anchors = utils.generate_anchors(8, [1, 4], (2, 3), feature_stride=4, anchor_stride=1)
    assert anchors.shape == (2 * 3 * 2, 4)
    # cell (0, 1) is centred at (0, 4); ratio 1 -> 8x8, ratio 4 -> h 4, w 16
    np.testing.assert_allclose(anchors[2], [-4, 0, 4, 8])
    np.testing.assert_allclose(anchors[3], [-2, -4, 2, 12])
    # cell (1, 2) is centred at (4, 8)
    np.testing.assert_allclose(anchors[10], [0, 4, 8, 12])
    # Every ratio keeps the area of the scale
    areas = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    np.testing.assert_allclose(areas, 64)


def test_anchor_stride_skips_cells():
    anchors = utils.generate_anchors(8, [1], (4, 4), feature_stride=4, anchor_stride=2)
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert centers.tolist() == [[0, 0], [0, 8], [8, 0], [8, 8]]


def test_pyramid_anchors_need_one_scale_per_level():
    with pytest.raises(ValueError, match="2 scales, 3 feature shapes"):
        utils.generate_pyramid_anchors((8, 16), [1], [(4, 4)] * 3, [4, 8, 16], 1)
