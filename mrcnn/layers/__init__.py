"""Mask R-CNN's custom Keras layers; each takes explicit arguments and has ``get_config``.

``ProposalLayer`` (RPN boxes -> proposals), ``PyramidROIAlign`` (proposals -> pooled features),
``DetectionTargetLayer`` (training targets for the heads), ``DetectionLayer`` (final detections),
plus small wiring layers (anchors, box normalization, roi-axis reshapes).
"""

from mrcnn.layers.anchors import AnchorsLayer
from mrcnn.layers.detection import DetectionLayer
from mrcnn.layers.detection_target import DetectionTargetLayer
from mrcnn.layers.proposal import ProposalLayer
from mrcnn.layers.roi_align import PyramidROIAlign
from mrcnn.layers.wiring import (
    DetectionBoxes,
    DetectionClassIds,
    FirstRois,
    MergeRoiAxis,
    MetaField,
    NormBoxes,
    SplitRoiAxis,
)

__all__ = [
    "AnchorsLayer", "DetectionBoxes", "DetectionClassIds", "DetectionLayer", "DetectionTargetLayer", "FirstRois",
    "MergeRoiAxis",
    "MetaField", "NormBoxes",
    "ProposalLayer", "PyramidROIAlign", "SplitRoiAxis",
]
