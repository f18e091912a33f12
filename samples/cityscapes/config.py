"""Configurations for Cityscapes: real 1024x2048 frames, and the small synthetic set of the main job.

The 8 classes of the official instance benchmark are the default::

    config = CityscapesConfig()                          # background + 8 benchmark classes
    config = CityscapesConfig(CLASSES=INSTANCE_CLASSES,  # all 10 instance classes of the label table
                              NUM_CLASSES=1 + len(INSTANCE_CLASSES))

With all 10, caravan and trailer become classes of their own instead of crowd regions; the official
benchmark still scores only the 8 (it ignores predictions of the other two).
"""

from __future__ import annotations

from mrcnn.config import Config

from .dataset import BENCHMARK_CLASSES, INSTANCE_CLASSES


class CityscapesConfig(Config):
    """Training on the fine annotations of real Cityscapes (2975 train frames of 1024x2048)."""

    NAME = "cityscapes"
    CLASSES = BENCHMARK_CLASSES
    NUM_CLASSES = 1 + len(BENCHMARK_CLASSES)

    # Image settings for 1024x2048 frames. Objects in Cityscapes are small (a pedestrian 100 m away is
    # ~20 px tall), so frames are not downscaled: the Mask R-CNN paper trains Cityscapes with the short
    # side drawn from 800-1024 and tests at 1024; Detectron2's Cityscapes config does the same. Training
    # needs a fixed input shape (the anchors are built once), and a full 1024x2048 frame with a ResNet-101
    # FPN needs about twice the activation memory of a 1024x1024 crop, so training takes random
    # 1024x1024 crops at full resolution (half a frame, the scale the model later sees at test time).
    # Inference (CityscapesInferenceConfig) runs on the whole frame, padded to multiples of 64
    # (1024x2048 needs no padding), so the aspect ratio is kept and nothing is cut off.
    IMAGE_RESIZE_MODE = "crop"
    IMAGE_MIN_DIM = 1024
    IMAGE_MAX_DIM = 2048
    IMAGES_PER_GPU = 1          # one 1024x1024 crop per step fits a 16 GB GPU with ResNet-101

    # Up to ~100 annotated instances in a crowded frame; the benchmark scores up to 100 detections.
    MAX_GT_INSTANCES = 128
    DETECTION_MAX_INSTANCES = 100
    TRAIN_ROIS_PER_IMAGE = 256
    # Frames are dominated by road, buildings and sky: a background ROI is easy, an object is not.
    ROI_POSITIVE_RATIO = 0.33

    STEPS_PER_EPOCH = 1000
    VALIDATION_STEPS = 50
    LEARNING_RATE = 0.001       # Matterport's (coco.py) for batches of 1-2 images with SGD + momentum

    def _validate(self):
        super()._validate()
        unknown = [c for c in self.CLASSES if c not in INSTANCE_CLASSES]
        if unknown:
            self._fail("CLASSES", f"{unknown} are not Cityscapes instance classes {INSTANCE_CLASSES}")
        if self.NUM_CLASSES != 1 + len(self.CLASSES):
            self._fail("NUM_CLASSES", f"must be 1 + len(CLASSES) = {1 + len(self.CLASSES)} "
                                      f"(background + {', '.join(self.CLASSES)})")


class CityscapesInferenceConfig(CityscapesConfig):
    """Detection and evaluation on whole frames, at full resolution."""

    IMAGE_RESIZE_MODE = "pad64"
    IMAGES_PER_GPU = 1
    # Average precision rewards a long ranked list: keep low-confidence detections for evaluation
    # (Detectron2 tests at 0.05 too); pictures filter again at a higher score.
    DETECTION_MIN_CONFIDENCE = 0.05


class SyntheticCityscapesConfig(CityscapesConfig):
    """The synthetic 128x256 set on a CPU: a narrow ResNet-50 (width 16), trained from scratch.

    Random 128x128 crops at full resolution, as the real config does at 1024. Anchors cover the objects
    of the synthetic frames (12-50 px tall). From random weights, the heads need trainable batch norm and
    ground-truth boxes among their proposals (see the learning test in tests/test_learning.py), and
    few sampled anchors per image keep the RPN's handful of positives from drowning in negatives.
    """

    NAME = "cityscapes_synth"
    BACKBONE = "resnet50"
    RESNET_WIDTH = 16
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 256
    IMAGES_PER_GPU = 4
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 64
    FPN_CLASSIF_FC_LAYERS_SIZE = 256
    MASK_HEAD_SIZE = 64
    PRE_NMS_LIMIT = 1000
    POST_NMS_ROIS_TRAINING = 200
    POST_NMS_ROIS_INFERENCE = 100
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    TRAIN_ROIS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 32
    DETECTION_MAX_INSTANCES = 32
    TRAIN_ADD_GT_PROPOSALS = True
    TRAIN_BN = True
    # Batch statistics recomputed with the final weights of each epoch (mrcnn/precise_bn.py): with the
    # moving averages alone, the attention variant's validation loss jumped between 2 and 45 and it
    # detected nothing (its output's spread is small against its mean, so stale averages are far off).
    PRECISE_BN_BATCHES = 16
    STEPS_PER_EPOCH = 100
    VALIDATION_STEPS = 4
    LEARNING_RATE = 0.02


def with_settings(config, **overrides):
    """A new config of the same class with ``config``'s settings (keyword overrides included) and ``overrides``."""
    derived = ("BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE")
    values = {k: getattr(config, k) for k in dir(config)
              if k.isupper() and not k.startswith("_") and k not in derived}
    return type(config)(**{**values, **overrides})


def inference_config(config):
    """The inference twin of a training config: same classes and model, CityscapesInferenceConfig's image
    and detection settings."""
    inference = ("IMAGE_RESIZE_MODE", "IMAGES_PER_GPU", "DETECTION_MIN_CONFIDENCE")
    return with_settings(config, GPU_COUNT=1, **{k: getattr(CityscapesInferenceConfig, k) for k in inference})
