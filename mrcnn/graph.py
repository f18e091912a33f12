"""Wiring the Mask R-CNN graph from a Config: the one place that maps Config onto layer arguments.

Training model inputs (Matterport's order and names)::

    input_image         [batch, H, W, C]  molded
    input_image_meta    [batch, IMAGE_META_SIZE]
    input_rpn_match     [batch, anchors, 1]
    input_rpn_bbox      [batch, RPN_TRAIN_ANCHORS_PER_IMAGE, 4]
    input_gt_class_ids  [batch, MAX_GT_INSTANCES]
    input_gt_boxes      [batch, MAX_GT_INSTANCES, 4]  pixels
    input_gt_masks      [batch, h, w, MAX_GT_INSTANCES]  uint8 0/1 (mini masks or full size)

and outputs ``rpn_class_logits, rpn_class, rpn_bbox, mrcnn_class_logits, mrcnn_class, mrcnn_bbox,
mrcnn_mask, rois, output_rois`` followed by the five losses.

Inference model inputs: ``input_image`` (molded) and ``input_image_meta``; the anchors are computed in the
graph from the molded size (a constant in square mode); outputs ``mrcnn_detection [batch,
DETECTION_MAX_INSTANCES, 6], mrcnn_class, mrcnn_bbox, mrcnn_mask, ROI, rpn_class, rpn_bbox``.

Both are :class:`MaskRCNNModel`s, whose train, test and predict steps tell the layers whether they are traced
for XLA (mrcnn.ops.tracing): nothing in the graph depends on the machine that builds it. Where XLA does not
compile the step (TensorFlow's default on a CPU), the mask head runs on the ROI slots that need it, a count
known when the graph runs: in training the sampled positives (``MASK_HEAD_POSITIVES_ONLY``), in inference the
detections; ``mrcnn_mask`` keeps its shape, zeros after those slots. Under XLA, whose shapes are fixed, on the
positive slots in training and on every detection slot in inference.
"""

from __future__ import annotations

import contextlib

import keras
from keras import layers

from mrcnn import ops as mops
from mrcnn.backbone import fpn_graph, resnet_graph
from mrcnn.heads import build_fpn_mask_graph, build_rpn_model, fpn_classifier_graph
from mrcnn.layers import (
    AnchorsLayer,
    DetectionBoxes,
    DetectionClassIds,
    DetectionLayer,
    DetectionTargetLayer,
    FirstRois,
    MetaField,
    NormBoxes,
    ProposalLayer,
)
from mrcnn.losses import LossLayer


def _backbone(input_image, config):
    if callable(config.BACKBONE):
        c1, c2, c3, c4, c5 = config.BACKBONE(input_image, stage5=True, train_bn=config.TRAIN_BN)
    else:
        c1, c2, c3, c4, c5 = resnet_graph(input_image, config.BACKBONE, stage5=True,
                                          train_bn=config.TRAIN_BN, width=config.RESNET_WIDTH,
                                          attention_stages=tuple(config.ATTENTION_STAGES),
                                          attention_kernel=config.ATTENTION_KERNEL,
                                          attention_heads=config.ATTENTION_HEADS,
                                          attention_projection=config.ATTENTION_PROJECTION)
    return fpn_graph(c2, c3, c4, c5, config.TOP_DOWN_PYRAMID_SIZE)


def _rpn(feature_maps, config):
    rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS),
                          config.TOP_DOWN_PYRAMID_SIZE)
    outputs = [rpn(p) for p in feature_maps]
    # rpn_class stays float32 under mixed precision (proposals are ranked by it)
    rpn_class_logits, rpn_class, rpn_bbox = (
        layers.Concatenate(axis=1, name=name, **({"dtype": "float32"} if name == "rpn_class" else {}))(
            [o[i] for o in outputs])
        for i, name in enumerate(("rpn_class_logits", "rpn_class", "rpn_bbox")))
    return rpn_class_logits, rpn_class, rpn_bbox


def _fixed_size(config, mode):
    """Whether every molded image has the size IMAGE_SHAPE (crop mode resizes only in training)."""
    return config.IMAGE_RESIZE_MODE == "square" or (mode == "training" and config.IMAGE_RESIZE_MODE == "crop")


def _anchors_layer(config):
    """The anchors of the molded input (a constant where its size is fixed, computed from it otherwise)."""
    custom = callable(config.BACKBONE) and config.COMPUTE_BACKBONE_SHAPE is not None
    return AnchorsLayer(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, config.BACKBONE_STRIDES,
                        config.RPN_ANCHOR_STRIDE, feature_shapes=config.feature_shapes() if custom else None,
                        name="anchors")


def _image_input(config, mode):
    if _fixed_size(config, mode):
        shape = tuple(int(v) for v in config.IMAGE_SHAPE)
    elif mode == "training":
        raise ValueError(
            f"training needs a fixed input size: IMAGE_RESIZE_MODE={config.IMAGE_RESIZE_MODE!r} gives "
            f"images of varying size; use 'square' or 'crop'")
    else:
        shape = (None, None, config.IMAGE_CHANNEL_COUNT)
    return keras.Input(shape=shape, name="input_image")


@keras.saving.register_keras_serializable(package="mrcnn")
class MaskRCNNModel(keras.Model):
    """A functional Keras model whose steps are traced as its ``jit_compile`` says (mrcnn.ops.tracing): the
    layers choose their kernels and shapes then, for XLA or not, on whatever machine runs them."""

    def train_step(self, *args, **kwargs):
        with mops.tracing(self.jit_compile):
            return super().train_step(*args, **kwargs)

    def test_step(self, *args, **kwargs):
        with mops.tracing(self.jit_compile):
            return super().test_step(*args, **kwargs)

    def predict_step(self, *args, **kwargs):
        with mops.tracing(self.jit_compile):
            return super().predict_step(*args, **kwargs)


@contextlib.contextmanager
def precision_policy(config):
    """Build under ``Config.MIXED_PRECISION`` (None: the global Keras policy, float32 unless set).

    Layers take the policy when they are created, so the global policy is set for the build only and
    restored afterwards. Box math, NMS, detection targets and losses are float32 layers whatever it is.
    """
    if config.MIXED_PRECISION is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.MIXED_PRECISION)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_training_model(config, model_class=MaskRCNNModel, seed=None):
    """The training graph; ``model_class`` is instantiated as ``model_class(inputs, outputs, name=...)``."""
    with precision_policy(config):
        return _build_training_model(config, model_class, seed)


def build_inference_model(config):
    """The inference graph on molded images (any size in pad64 and none modes); mrcnn.export wraps it with
    the in-graph molding and unmolding."""
    with precision_policy(config):
        return _build_inference_model(config)


def _build_training_model(config, model_class, seed):
    input_image = _image_input(config, "training")
    input_image_meta = keras.Input(shape=(config.IMAGE_META_SIZE,), name="input_image_meta")
    anchors_layer = _anchors_layer(config)
    num_anchors = len(anchors_layer.numpy_anchors(*config.IMAGE_SHAPE[:2]))
    input_rpn_match = keras.Input(shape=(num_anchors, 1), name="input_rpn_match",
                                  dtype="int32")
    input_rpn_bbox = keras.Input(shape=(config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), name="input_rpn_bbox")
    input_gt_class_ids = keras.Input(shape=(config.MAX_GT_INSTANCES,), name="input_gt_class_ids",
                                     dtype="int32")
    input_gt_boxes = keras.Input(shape=(config.MAX_GT_INSTANCES, 4), name="input_gt_boxes")
    mask_shape = tuple(config.MINI_MASK_SHAPE) if config.USE_MINI_MASK else tuple(config.IMAGE_SHAPE[:2])
    # uint8 0/1 (bool masks are converted): tf.distribute cannot reduce bool tensors
    input_gt_masks = keras.Input(shape=mask_shape + (config.MAX_GT_INSTANCES,), name="input_gt_masks",
                                 dtype="uint8")
    gt_boxes = NormBoxes(name="norm_gt_boxes")(input_gt_boxes, input_image)

    p2, p3, p4, p5, p6 = _backbone(input_image, config)
    rpn_class_logits, rpn_class, rpn_bbox = _rpn([p2, p3, p4, p5, p6], config)
    anchors = anchors_layer(input_image)
    rpn_rois = ProposalLayer(config.POST_NMS_ROIS_TRAINING, config.RPN_NMS_THRESHOLD,
                             config.PRE_NMS_LIMIT, config.RPN_BBOX_STD_DEV, name="ROI")(
        rpn_class, rpn_bbox, anchors)
    rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
        config.TRAIN_ROIS_PER_IMAGE, config.ROI_POSITIVE_RATIO, config.BBOX_STD_DEV, config.MASK_SHAPE,
        config.USE_MINI_MASK, add_gt_proposals=config.TRAIN_ADD_GT_PROPOSALS, seed=seed,
        name="proposal_targets")(
        rpn_rois, input_gt_class_ids, gt_boxes, input_gt_masks)

    mrcnn_feature_maps = [p2, p3, p4, p5]
    mrcnn_class_logits, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
        rois, mrcnn_feature_maps, input_image_meta, config.POOL_SIZE, config.NUM_CLASSES,
        train_bn=config.TRAIN_BN, fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE)
    mask_rois, mask_class_ids, mask_targets = rois, target_class_ids, target_mask
    if config.MASK_HEAD_POSITIVES_ONLY:  # the slots positives can fill (they come first)
        slots = int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO)
        # without XLA, only as many as were sampled (a size known when the step runs)
        mask_rois, mask_class_ids, mask_targets = (
            FirstRois(slots, name=f"positive_slots_{name}")(tensor, target_class_ids)
            for name, tensor in (("rois", rois), ("class_ids", target_class_ids), ("masks", target_mask)))
    positive_masks = build_fpn_mask_graph(mask_rois, mrcnn_feature_maps, input_image_meta, config.MASK_POOL_SIZE,
                                          config.NUM_CLASSES, train_bn=config.TRAIN_BN,
                                          head_size=config.MASK_HEAD_SIZE)
    mrcnn_mask = positive_masks
    if config.MASK_HEAD_POSITIVES_ONLY:  # Matterport's output shape: zeros after those slots
        mrcnn_mask = FirstRois(slots, pad_to=config.TRAIN_ROIS_PER_IMAGE, name="mrcnn_mask_all_slots")(
            positive_masks)
    output_rois = layers.Identity(name="output_rois", dtype="float32")(rois)
    active_class_ids = MetaField("active_class_ids", name="active_class_ids")(input_image_meta)

    losses = [
        LossLayer("rpn_class_loss")(input_rpn_match, rpn_class_logits),
        LossLayer("rpn_bbox_loss")(input_rpn_bbox, input_rpn_match, rpn_bbox),
        LossLayer("mrcnn_class_loss")(target_class_ids, mrcnn_class_logits, active_class_ids, rois),
        LossLayer("mrcnn_bbox_loss")(target_bbox, target_class_ids, mrcnn_bbox),
        LossLayer("mrcnn_mask_loss")(mask_targets, mask_class_ids, positive_masks),
    ]
    inputs = [input_image, input_image_meta, input_rpn_match, input_rpn_bbox, input_gt_class_ids,
              input_gt_boxes, input_gt_masks]
    outputs = [rpn_class_logits, rpn_class, rpn_bbox, mrcnn_class_logits, mrcnn_class, mrcnn_bbox,
               mrcnn_mask, rpn_rois, output_rois] + losses
    return model_class(inputs, outputs, name="mask_rcnn")


def _build_inference_model(config):
    input_image = _image_input(config, "inference")
    input_image_meta = keras.Input(shape=(config.IMAGE_META_SIZE,), name="input_image_meta")
    if not _fixed_size(config, "inference") and config.COMPUTE_BACKBONE_SHAPE is not None:
        raise ValueError(
            f"COMPUTE_BACKBONE_SHAPE with IMAGE_RESIZE_MODE={config.IMAGE_RESIZE_MODE!r}: the inference graph computes "
            f"the anchors of each image size as ceil(size / BACKBONE_STRIDES); use IMAGE_RESIZE_MODE='square' "
            f"(one size) or describe the backbone's feature maps by BACKBONE_STRIDES")
    anchors = _anchors_layer(config)(input_image)  # from the molded image's size, in the graph where it varies

    p2, p3, p4, p5, p6 = _backbone(input_image, config)
    _, rpn_class, rpn_bbox = _rpn([p2, p3, p4, p5, p6], config)
    rpn_rois = ProposalLayer(config.POST_NMS_ROIS_INFERENCE, config.RPN_NMS_THRESHOLD,
                             config.PRE_NMS_LIMIT, config.RPN_BBOX_STD_DEV, name="ROI")(
        rpn_class, rpn_bbox, anchors)
    mrcnn_feature_maps = [p2, p3, p4, p5]
    _, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
        rpn_rois, mrcnn_feature_maps, input_image_meta, config.POOL_SIZE, config.NUM_CLASSES,
        train_bn=config.TRAIN_BN, fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE)
    detections = DetectionLayer(config.DETECTION_MAX_INSTANCES, config.DETECTION_MIN_CONFIDENCE,
                                config.DETECTION_NMS_THRESHOLD, config.BBOX_STD_DEV,
                                every_class=config.DETECTION_EVERY_CLASS, name="mrcnn_detection")(
        rpn_rois, mrcnn_class, mrcnn_bbox, input_image_meta)
    detection_boxes = DetectionBoxes(name="detection_boxes")(detections)
    slots = config.DETECTION_MAX_INSTANCES
    # without XLA the mask head runs on the detections there are (they come first), not every slot
    class_ids = DetectionClassIds(name="detection_class_ids")(detections)
    detection_boxes = FirstRois(slots, name="detected_boxes")(detection_boxes, class_ids)
    mrcnn_mask = build_fpn_mask_graph(detection_boxes, mrcnn_feature_maps, input_image_meta,
                                      config.MASK_POOL_SIZE, config.NUM_CLASSES, train_bn=config.TRAIN_BN,
                                      head_size=config.MASK_HEAD_SIZE)
    # Matterport's output: every slot, zeros after the detections
    mrcnn_mask = FirstRois(slots, pad_to=slots, name="mrcnn_mask_all_slots")(mrcnn_mask)
    return MaskRCNNModel([input_image, input_image_meta],
                       [detections, mrcnn_class, mrcnn_bbox, mrcnn_mask, rpn_rois, rpn_class, rpn_bbox],
                       name="mask_rcnn")
