"""Mask R-CNN base configuration (Matterport's ``Config``, with validation).

Subclass :class:`Config` and override what differs for your data set, exactly as with Matterport::

    class ShapesConfig(Config):
        NAME = "shapes"
        IMAGES_PER_GPU = 8
        NUM_CLASSES = 1 + 3          # background + 3 shapes
        IMAGE_MIN_DIM = IMAGE_MAX_DIM = 128

    config = ShapesConfig()          # derived values computed, everything validated
    config.display()

Keyword arguments override class attributes for one instance (``ShapesConfig(IMAGES_PER_GPU=1)``),
which is handy for inference configs and tests. Invalid settings raise :class:`ConfigError` naming the
attribute and the value received.
"""

from __future__ import annotations

import math

import numpy as np

LOSS_NAMES = (
    "rpn_class_loss",
    "rpn_bbox_loss",
    "mrcnn_class_loss",
    "mrcnn_bbox_loss",
    "mrcnn_mask_loss",
)
RESIZE_MODES = ("square", "pad64", "crop", "none")
BACKBONES = ("resnet50", "resnet101")
PRECISIONS = (None, "mixed_float16", "mixed_bfloat16")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the attribute and the value."""


class Config:
    """Base configuration. Every default is Matterport's, with its reason beside it."""

    # Name the configuration (used in log-dir and checkpoint names). Override in sub-classes.
    NAME = None

    # Number of GPUs to use on this machine. N > 1 trains with tf.distribute.MirroredStrategy over the
    # first N GPUs (Keras distribution replaces Matterport's ParallelModel); with TF_CONFIG set, every
    # machine uses its first N GPUs under MultiWorkerMirroredStrategy. See mrcnn.distribute.
    GPU_COUNT = 1

    # Images per GPU. A 12 GB GPU typically holds 2 images of 1024x1024 px; adjust to memory and size.
    IMAGES_PER_GPU = 2

    # Training steps per epoch. Not tied to the data set size: validation stats are computed at the
    # end of each epoch, so a smaller number gives more frequent checkpoints and TensorBoard points.
    STEPS_PER_EPOCH = 1000

    # Validation steps at the end of every epoch. More is more accurate but slower; 0 trains without
    # validation (as does train(val_dataset=None)).
    VALIDATION_STEPS = 50

    # Backbone: "resnet50", "resnet101", or a callable ``f(input_image, stage5=True, train_bn=...)``
    # returning the feature maps [C1, C2, C3, C4, C5]. With a callable, COMPUTE_BACKBONE_SHAPE may give
    # the feature-map shapes; when it is None they follow from BACKBONE_STRIDES.
    BACKBONE = "resnet101"
    COMPUTE_BACKBONE_SHAPE = None

    # Channel width of the ResNet backbone: conv1 and stage 2's bottleneck width; later stages double it.
    # 64 is ResNet's (and the only width Matterport's and ImageNet's weight files fit); 16 gives a
    # ~1/16-cost ResNet that trains from scratch on a CPU (the synthetic Cityscapes main job).
    RESNET_WIDTH = 64

    # Local self-attention (Ramachandran et al. 2019) in place of the 3x3 convolution of every bottleneck
    # of these ResNet stages (2-5); () is the plain ResNet. The paper found convolutions early and
    # attention late the best trade-off; ATTENTION_DEFAULT_STAGES is what `cityscapes.py --attention` uses.
    # ATTENTION_KERNEL is the side of each pixel's memory block, ATTENTION_HEADS the number of heads.
    ATTENTION_STAGES = ()
    ATTENTION_DEFAULT_STAGES = (4, 5)
    ATTENTION_KERNEL = 7
    ATTENTION_HEADS = 8
    # "grouped": the paper's per-head projections of C/heads input channels each; "full": every head
    # projects all C channels (heads times the projection weights). See attention/local_attention.py.
    ATTENTION_PROJECTION = "grouped"

    # The strides of each layer of the FPN pyramid (ResNet-101 backbone values).
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]

    # Size of the fully-connected layers in the classification graph.
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024

    # Channels of the mask head's convolutions (Matterport: 256). Smaller values make tiny test models fast.
    MASK_HEAD_SIZE = 256

    # Size of the top-down layers used to build the feature pyramid.
    TOP_DOWN_PYRAMID_SIZE = 256

    # Number of classification classes, including background. Override in sub-classes.
    NUM_CLASSES = 1

    # Length of square anchor side in pixels, one per pyramid level.
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)

    # Ratios of anchors at each cell (width/height); 0.5 is a wide anchor, 2 a tall one.
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]

    # Anchor stride: 1 creates anchors for every cell of the backbone feature map, 2 for every other.
    RPN_ANCHOR_STRIDE = 1

    # Non-max suppression threshold to filter RPN proposals. Increase during training for more proposals.
    RPN_NMS_THRESHOLD = 0.7

    # How many anchors per image to use for RPN training.
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256

    # ROIs kept after tf.nn.top_k and before non-maximum suppression.
    PRE_NMS_LIMIT = 6000

    # ROIs kept after non-maximum suppression (training and inference).
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000

    # If enabled, resizes instance masks to a smaller size to reduce memory load.
    # Recommended when using high-resolution images.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)  # (height, width) of the mini-mask

    # Input image resizing; see utils.resize_image.
    #   none:   no resizing or padding. Return the image unchanged.
    #   square: resize and pad with zeros to a square of [max_dim, max_dim].
    #   pad64:  pad width and height with zeros to make them multiples of 64. If IMAGE_MIN_DIM or
    #           IMAGE_MIN_SCALE are set, scale up before padding. IMAGE_MAX_DIM is ignored.
    #   crop:   pick random crops of [min_dim, min_dim]; training only; IMAGE_MAX_DIM is unused.
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    # Minimum scaling ratio, checked after IMAGE_MIN_DIM, which can force a larger up-scaling
    # (e.g. 2 doubles images even if IMAGE_MIN_DIM does not require it). In square mode it can be
    # overruled by IMAGE_MAX_DIM.
    IMAGE_MIN_SCALE = 0
    # Number of colour channels per image. RGB = 3, grayscale = 1, RGB-D = 4.
    IMAGE_CHANNEL_COUNT = 3

    # Image mean (RGB), subtracted by mold_image.
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    # ROIs per image fed to the classifier/mask heads. The Mask R-CNN paper uses 512, but the RPN
    # often does not generate enough positive proposals to fill it while keeping a 1:3 ratio.
    TRAIN_ROIS_PER_IMAGE = 200

    # Percent of positive ROIs used to train classifier/mask heads.
    ROI_POSITIVE_RATIO = 0.33

    # In training, run the mask head only on the ROI slots that can hold positives (the first
    # int(TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO); the sampled positives come first), as torchvision and
    # Detectron2 do. The mask loss reads positives only, so the loss and its gradients are Matterport's, who
    # ran the head on every sampled ROI, for a third of the work (the mask head was most of a training step:
    # benchmarks/bench_model.py --profile). Without XLA only as many slots as the batch's largest number of
    # sampled positives (a size known when the step runs); with XLA, whose shapes are fixed, all of those
    # slots. The training model's mrcnn_mask output keeps its shape, zeros after the slots computed.
    # False: Matterport's graph (with TRAIN_BN, batch statistics then include the negatives).
    MASK_HEAD_POSITIVES_ONLY = True

    # Pooled ROIs.
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14

    # Shape of the output mask. To change this you also need to change the mask head.
    MASK_SHAPE = [28, 28]

    # Maximum number of ground-truth instances to use in one image.
    MAX_GT_INSTANCES = 100

    # Bounding box refinement standard deviation for RPN and final detections.
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    # Max number of final detections.
    DETECTION_MAX_INSTANCES = 100

    # Minimum probability to accept a detected instance; ROIs below it are skipped.
    DETECTION_MIN_CONFIDENCE = 0.7

    # Non-maximum suppression threshold for detection.
    DETECTION_NMS_THRESHOLD = 0.3

    # Which (ROI, class) pairs can become detections. False (Matterport): a ROI's most likely class only, and
    # none where that is background. True (torchvision, Detectron2): every class of every ROI whose probability
    # reaches DETECTION_MIN_CONFIDENCE, each boxed by its own deltas, the best as many as there are ROIs going
    # on to NMS. Average precision counts the lower-scored detections this adds (with DETECTION_MIN_CONFIDENCE
    # near 0, as COCO-style evaluation wants).
    DETECTION_EVERY_CLASS = False

    # Learning rate and momentum. The paper uses 0.02, but on TensorFlow that makes weights explode,
    # likely due to optimizer differences.
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9

    # Linear warm-up of a float learning rate over the run's first this many steps (counted over every train()
    # call of the run, and across a resume), from 0.001 of it, as Detectron2 and torchvision's references do.
    # 0: none (Matterport). A keras LearningRateSchedule passed to train() brings its own.
    LEARNING_RATE_WARMUP_STEPS = 0

    # Weight decay regularization.
    WEIGHT_DECAY = 0.0001

    # Loss weights for more precise optimization.
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.0,
        "rpn_bbox_loss": 1.0,
        "mrcnn_class_loss": 1.0,
        "mrcnn_bbox_loss": 1.0,
        "mrcnn_mask_loss": 1.0,
    }

    # Add the ground-truth boxes to the RPN proposals when sampling training ROIs (as torchvision and
    # detectron2 do). Not in Matterport, hence off by default: with pretrained weights the RPN proposes
    # good boxes from the start. Turn it on to train from scratch: otherwise the heads get no positive
    # ROI (and, by Matterport's sampling rule, no ROI at all) until the RPN has learned.
    TRAIN_ADD_GT_PROPOSALS = False

    # Train or freeze batch normalization layers. False (frozen, using the stored statistics) is
    # recommended: batches are small, which makes batch statistics poor estimates.
    TRAIN_BN = False

    # Precise BN: with TRAIN_BN, after each epoch's training steps (before validation and the
    # checkpoint), set every batch-norm layer's moving mean and variance to the mean of its batch
    # statistics over this many training batches, computed with the current weights (Detectron2's
    # PreciseBN; see mrcnn/precise_bn.py). 0: keep the moving averages (Matterport).
    PRECISE_BN_BATCHES = 0

    # TensorBoard: the loss and the five named losses every this many training steps (means over those steps,
    # under step/<loss>), beside the per-epoch curves Keras writes; 0: per epoch only. The CSV is per epoch.
    TENSORBOARD_EVERY_STEPS = 20

    # Checkpoints a run keeps: None keeps every epoch's (Matterport); N keeps the last N, deleting older ones
    # as new ones are written. A checkpoint holds the weights and the momentum of every trainable weight (what
    # an exact resume needs): with all layers trained, 361 MB at ResNet-50 and 514 MB at ResNet-101 (81
    # classes), twice the weights alone.
    CHECKPOINTS_TO_KEEP = None

    # Gradient norm clipping: all gradients are scaled together when their global norm exceeds this
    # (Keras 2's clipnorm, which Matterport used; Keras 3 spells it global_clipnorm).
    GRADIENT_CLIP_NORM = 5.0

    # XLA compilation of the training and inference steps: None leaves Keras's "auto" (on whenever a
    # GPU is visible and no tf.distribute strategy is active, off on CPU-only machines), True or False
    # force it.
    JIT_COMPILE = None

    # Mixed precision: None (float32), "mixed_float16" (GPUs with tensor cores; a LossScaleOptimizer
    # guards against underflow) or "mixed_bfloat16" (TPUs, Ampere and later GPUs, recent CPUs).
    # Convolutions and heads compute in the low type; anchors, box math, NMS, ROIAlign's coordinates
    # and level choice, detection targets and losses stay float32; weights are stored in float32.
    MIXED_PRECISION = None

    def __init__(self, **overrides):
        for key, value in overrides.items():
            if not key.isupper() or not hasattr(type(self), key):
                raise ConfigError(
                    f"{type(self).__name__} has no setting {key!r} (got {key}={value!r}); "
                    "settings are the upper-case attributes of Config"
                )
            setattr(self, key, value)
        self._validate()
        # Effective batch size
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        # Input image size
        if self.IMAGE_RESIZE_MODE == "crop":
            self.IMAGE_SHAPE = np.array(
                [self.IMAGE_MIN_DIM, self.IMAGE_MIN_DIM, self.IMAGE_CHANNEL_COUNT]
            )
        else:
            self.IMAGE_SHAPE = np.array(
                [self.IMAGE_MAX_DIM, self.IMAGE_MAX_DIM, self.IMAGE_CHANNEL_COUNT]
            )
        # Image meta data length; see mrcnn.data.image_meta for the layout.
        self.IMAGE_META_SIZE = 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES

    # ------------------------------------------------------------------ validation
    def _fail(self, name, why):
        raise ConfigError(f"{type(self).__name__}.{name}={getattr(self, name)!r}: {why}")

    def _require_count(self, name, zero_means):
        """``name`` must be an integer >= 0; ``zero_means`` says what 0 does."""
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            self._fail(name, f"must be an integer >= 0 (0: {zero_means})")

    def _require_positive_int(self, *names):
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                self._fail(name, "must be a positive integer")

    def _validate(self):
        self._require_count("VALIDATION_STEPS", "no validation")
        self._require_positive_int(
            "GPU_COUNT", "IMAGES_PER_GPU", "STEPS_PER_EPOCH",
            "RPN_TRAIN_ANCHORS_PER_IMAGE", "PRE_NMS_LIMIT", "POST_NMS_ROIS_TRAINING",
            "POST_NMS_ROIS_INFERENCE", "TRAIN_ROIS_PER_IMAGE", "POOL_SIZE", "MASK_POOL_SIZE",
            "MAX_GT_INSTANCES", "DETECTION_MAX_INSTANCES", "IMAGE_CHANNEL_COUNT", "RPN_ANCHOR_STRIDE",
            "MASK_HEAD_SIZE", "FPN_CLASSIF_FC_LAYERS_SIZE", "TOP_DOWN_PYRAMID_SIZE", "RESNET_WIDTH",
        )
        if isinstance(self.NUM_CLASSES, bool) or not isinstance(self.NUM_CLASSES, (int, np.integer)) \
                or self.NUM_CLASSES < 2:
            self._fail("NUM_CLASSES", "must be an integer >= 2 (background + at least one class); "
                                      "set it in your Config subclass")
        if not (callable(self.BACKBONE) or self.BACKBONE in BACKBONES):
            self._fail("BACKBONE", f"must be one of {BACKBONES} or a callable building the backbone")
        self._validate_attention()
        self._require_count("LEARNING_RATE_WARMUP_STEPS", "no warm-up")
        self._require_count("TENSORBOARD_EVERY_STEPS", "per epoch only")
        keep = self.CHECKPOINTS_TO_KEEP
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1):
            self._fail("CHECKPOINTS_TO_KEEP", "must be None (keep all) or an integer >= 1")
        self._require_count("PRECISE_BN_BATCHES", "off")
        if not isinstance(self.DETECTION_EVERY_CLASS, (bool, np.bool_)):
            self._fail("DETECTION_EVERY_CLASS", "must be True (torchvision's rule) or False (Matterport's)")
        if self.COMPUTE_BACKBONE_SHAPE is not None and not callable(self.COMPUTE_BACKBONE_SHAPE):
            self._fail("COMPUTE_BACKBONE_SHAPE", "must be None or a callable f(image_shape)")
        if len(self.RPN_ANCHOR_SCALES) != len(self.BACKBONE_STRIDES):
            self._fail("RPN_ANCHOR_SCALES",
                       f"needs one scale per pyramid level, i.e. {len(self.BACKBONE_STRIDES)} "
                       f"(len(BACKBONE_STRIDES)), got {len(self.RPN_ANCHOR_SCALES)}")
        if len(self.RPN_ANCHOR_RATIOS) == 0 or min(self.RPN_ANCHOR_RATIOS) <= 0:
            self._fail("RPN_ANCHOR_RATIOS", "must be a non-empty list of positive ratios")
        if self.IMAGE_RESIZE_MODE not in RESIZE_MODES:
            self._fail("IMAGE_RESIZE_MODE", f"unknown resize mode; expected one of {RESIZE_MODES}")
        if self.IMAGE_RESIZE_MODE == "square":
            self._require_multiple_of_64("IMAGE_MAX_DIM")
        elif self.IMAGE_RESIZE_MODE == "crop":
            self._require_multiple_of_64("IMAGE_MIN_DIM")
        elif self.IMAGE_RESIZE_MODE == "pad64" and self.IMAGE_MIN_DIM:
            self._require_multiple_of_64("IMAGE_MIN_DIM")
        if np.shape(self.MEAN_PIXEL) != (self.IMAGE_CHANNEL_COUNT,):
            self._fail("MEAN_PIXEL", f"needs one value per channel (IMAGE_CHANNEL_COUNT="
                                     f"{self.IMAGE_CHANNEL_COUNT}), got shape {np.shape(self.MEAN_PIXEL)}")
        for name in ("RPN_BBOX_STD_DEV", "BBOX_STD_DEV"):
            if np.shape(getattr(self, name)) != (4,):
                self._fail(name, "must hold 4 values (dy, dx, log dh, log dw)")
        for name in ("MINI_MASK_SHAPE", "MASK_SHAPE"):
            shape = tuple(getattr(self, name))
            if len(shape) != 2 or min(shape) < 1:
                self._fail(name, "must be (height, width) with positive sides")
        if tuple(int(v) for v in self.MASK_SHAPE) != (2 * self.MASK_POOL_SIZE,) * 2:
            self._fail("MASK_SHAPE", f"must be twice MASK_POOL_SIZE={self.MASK_POOL_SIZE} in both sides (the mask "
                                     f"head upsamples its pooled ROI features 2x): "
                                     f"{[2 * self.MASK_POOL_SIZE] * 2}, or change MASK_POOL_SIZE")
        if not 0 < self.ROI_POSITIVE_RATIO <= 1:
            self._fail("ROI_POSITIVE_RATIO", "must be in (0, 1]")
        for name in ("RPN_NMS_THRESHOLD", "DETECTION_NMS_THRESHOLD", "DETECTION_MIN_CONFIDENCE"):
            if not 0 <= getattr(self, name) <= 1:
                self._fail(name, "must be in [0, 1]")
        if getattr(self, "USE_RPN_ROIS", True) is not True:  # Matterport's debugging switch, set by a subclass
            self._fail("USE_RPN_ROIS", "only True is supported: the heads train on the RPN's proposals "
                                       "(Matterport's externally generated ROIs are not carried over)")
        if set(self.LOSS_WEIGHTS) != set(LOSS_NAMES):
            self._fail("LOSS_WEIGHTS", f"must have exactly the keys {LOSS_NAMES}")
        if self.LEARNING_RATE <= 0:
            self._fail("LEARNING_RATE", "must be positive")
        if self.GRADIENT_CLIP_NORM is not None and self.GRADIENT_CLIP_NORM <= 0:
            self._fail("GRADIENT_CLIP_NORM", "must be positive (or None for no clipping)")
        if not any(self.JIT_COMPILE is v for v in (None, True, False)):
            self._fail("JIT_COMPILE", "must be None (Keras's auto), True or False")
        if self.MIXED_PRECISION not in PRECISIONS:
            self._fail("MIXED_PRECISION", f"unknown precision policy; expected one of {PRECISIONS}")

    def _validate_attention(self):
        stages = tuple(self.ATTENTION_STAGES)
        if not stages:
            return
        if not set(stages) <= {2, 3, 4, 5} or len(set(stages)) != len(stages):
            self._fail("ATTENTION_STAGES", "must list distinct ResNet stages among 2, 3, 4, 5 (e.g. (4, 5))")
        if callable(self.BACKBONE):
            self._fail("ATTENTION_STAGES", "applies to the built-in ResNet backbones only, not a callable BACKBONE")
        self._require_positive_int("ATTENTION_KERNEL", "ATTENTION_HEADS")
        if self.ATTENTION_KERNEL % 2 == 0:
            self._fail("ATTENTION_KERNEL", "must be odd (a window centred on its pixel)")
        if self.ATTENTION_PROJECTION not in ("grouped", "full"):
            self._fail("ATTENTION_PROJECTION", "must be 'grouped' (the paper's per-head projections) or 'full'")
        for stage in stages:
            width = self.RESNET_WIDTH * 2 ** (stage - 2)
            if width % self.ATTENTION_HEADS or (width // self.ATTENTION_HEADS) % 2:
                self._fail("ATTENTION_HEADS", f"stage {stage} has {width} bottleneck channels "
                                              f"(RESNET_WIDTH * 2**(stage-2)): heads must divide them into "
                                              f"groups of even depth")

    def _require_multiple_of_64(self, name):
        value = getattr(self, name)
        if not value or value % 64 != 0:
            self._fail(name, f"in {self.IMAGE_RESIZE_MODE!r} resize mode the image side must be divisible "
                             "by 64 (2**6, the coarsest FPN stride); e.g. 256, 512, 1024")

    # ------------------------------------------------------------------ views
    def to_dict(self):
        """All upper-case settings, derived ones included, as ``{name: value}``."""
        return {
            name: getattr(self, name)
            for name in sorted(dir(self))
            if name.isupper() and not name.startswith("_")
            and (not callable(getattr(self, name)) or name in ("BACKBONE", "COMPUTE_BACKBONE_SHAPE"))
        }

    def display(self):
        """Print every setting, one per line."""
        print("\nConfigurations:")
        for key, value in self.to_dict().items():
            print(f"{key:30} {value}")
        print("\n")

    def feature_shapes(self, image_shape=None):
        """Feature-map ``[[height, width], ...]`` per pyramid level (Matterport's compute_backbone_shapes)."""
        image_shape = self.IMAGE_SHAPE if image_shape is None else image_shape
        if callable(self.BACKBONE) and self.COMPUTE_BACKBONE_SHAPE is not None:
            return np.asarray(self.COMPUTE_BACKBONE_SHAPE(image_shape))
        return np.array(
            [[int(math.ceil(image_shape[0] / stride)), int(math.ceil(image_shape[1] / stride))]
             for stride in self.BACKBONE_STRIDES]
        )
