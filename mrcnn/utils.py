"""Matterport's ``mrcnn.utils``: the Dataset class and the NumPy box, mask, anchor and AP helpers.

Everything is importable from here under Matterport's names (``utils.Dataset``, ``utils.compute_ap``,
``utils.resize_image``...); the code lives in small modules named for what they hold.
"""

from mrcnn.anchors import generate_anchors, generate_pyramid_anchors
from mrcnn.boxes import (
    apply_box_deltas,
    box_refinement,
    compute_iou,
    compute_overlaps,
    denorm_boxes,
    extract_bboxes,
    non_max_suppression,
    norm_boxes,
    trim_zeros,
)
from mrcnn.dataset import Dataset, ImageLoadError, read_image_rgb
from mrcnn.download import COCO_MODEL_URL, WeightsDownloadError, download_trained_weights
from mrcnn.evaluation.ap import compute_ap, compute_ap_range, compute_matches, compute_recall
from mrcnn.imaging import resize, resize_image, resize_mask
from mrcnn.masks import compute_overlaps_masks, expand_mask, minimize_mask, unmold_mask

__all__ = [
    "COCO_MODEL_URL", "Dataset", "ImageLoadError", "WeightsDownloadError", "apply_box_deltas",
    "box_refinement", "compute_ap", "compute_ap_range", "compute_iou", "compute_matches",
    "compute_overlaps", "compute_overlaps_masks", "compute_recall", "denorm_boxes",
    "download_trained_weights", "expand_mask", "extract_bboxes", "generate_anchors",
    "generate_pyramid_anchors", "minimize_mask", "non_max_suppression", "norm_boxes", "read_image_rgb",
    "resize", "resize_image", "resize_mask", "trim_zeros", "unmold_mask",
]
