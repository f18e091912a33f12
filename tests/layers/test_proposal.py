import numpy as np
import pytest
from keras import ops

from mrcnn import utils
from mrcnn.layers import ProposalLayer

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)

STD = np.array([0.1, 0.1, 0.2, 0.2])


def _reference(probs, deltas, anchors, count, nms_threshold, pre_nms_limit):
    """Matterport's proposal steps in NumPy, one image."""
    scores = probs[:, 1]
    order = np.argsort(-scores, kind="stable")[:pre_nms_limit]
    boxes = utils.apply_box_deltas(anchors[order], deltas[order] * STD)
    boxes = np.clip(boxes, 0.0, 1.0)
    keep = utils.non_max_suppression(boxes, scores[order], nms_threshold)[:count]
    out = np.zeros((count, 4), np.float32)
    out[:len(keep)] = boxes[keep]
    return out


def test_proposals_match_numpy_reference():
    rng = np.random.default_rng(0)
    batch, n = 2, 400
    corner = rng.uniform(-0.1, 0.9, (batch, n, 2))
    anchors = np.concatenate([corner, corner + rng.uniform(0.05, 0.3, (batch, n, 2))], -1).astype(np.float32)
    logits = rng.normal(size=(batch, n, 2))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    deltas = rng.normal(0, 1, (batch, n, 4)).astype(np.float32)
    layer = ProposalLayer(proposal_count=250, nms_threshold=0.3, pre_nms_limit=300, rpn_bbox_std_dev=STD)
    proposals = ops.convert_to_numpy(layer(probs, deltas, anchors))
    assert proposals.shape == (2, 250, 4)
    for b in range(batch):
        expected = _reference(probs[b], deltas[b], anchors[b], 250, 0.3, 300)
        np.testing.assert_allclose(proposals[b], expected, atol=1e-5)
    assert (proposals >= 0).all() and (proposals <= 1).all()
    assert not proposals[0, -1].any()  # NMS left fewer than 250: zero padding at the end


def test_get_config_round_trip():
    layer = ProposalLayer(proposal_count=10, nms_threshold=0.7, pre_nms_limit=20, rpn_bbox_std_dev=STD,
                          name="ROI")
    clone = ProposalLayer.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
