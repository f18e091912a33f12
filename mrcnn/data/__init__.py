"""The data side of training: loading ground truth, augmentation, RPN targets and batches.

``mrcnn.data.generator`` imports Keras; everything else here is NumPy only.
"""

from mrcnn.data.augmentation import augment_image_and_masks
from mrcnn.data.image_meta import compose_image_meta, mold_image, parse_image_meta, unmold_image
from mrcnn.data.loading import load_image_gt
from mrcnn.data.targets import build_rpn_targets

__all__ = [
    "augment_image_and_masks", "build_rpn_targets", "compose_image_meta", "load_image_gt",
    "mold_image", "parse_image_meta", "unmold_image",
]
