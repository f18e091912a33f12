"""The RPN, the FPN classifier/box head and the FPN mask head, with Matterport's layer names.

Per-ROI layers run on ``[batch * num_rois, ...]`` tensors (``MergeRoiAxis`` / ``SplitRoiAxis``) instead
of Keras ``TimeDistributed`` wrappers; the weights and their names are the same as Matterport's
(``mrcnn_class_conv1``, ``mrcnn_class_bn1``, ``mrcnn_mask_deconv``...), so its weight files load. The
classifier's two convolutions over a whole ROI are computed as matrix products (mrcnn.layers.pooled_conv).
"""

from __future__ import annotations

import keras
from keras import layers
from keras.layers import Conv2D

from mrcnn.backbone import BatchNorm
from mrcnn.layers import MergeRoiAxis, PyramidROIAlign, SplitRoiAxis
from mrcnn.layers.pooled_conv import PooledConv2D


def build_rpn_model(anchor_stride, anchors_per_location, depth):
    """The RPN as a nested model named ``rpn_model``, shared by all pyramid levels.

    Input: a feature map ``[batch, h, w, depth]``. Outputs: ``rpn_class_logits`` ``[batch, anchors, 2]``,
    ``rpn_probs`` ``[batch, anchors, 2]`` (background, foreground), ``rpn_bbox``
    ``[batch, anchors, (dy, dx, log(dh), log(dw))]``, anchors ordered cell by cell as generate_anchors.
    """
    feature_map = keras.Input(shape=(None, None, depth), name="input_rpn_feature_map")
    shared = Conv2D(512, 3, padding="same", activation="relu", strides=anchor_stride,
                           name="rpn_conv_shared")(feature_map)
    x = Conv2D(2 * anchors_per_location, 1, name="rpn_class_raw")(shared)
    rpn_class_logits = layers.Reshape((-1, 2))(x)
    # float32 probabilities under mixed precision: proposals are ranked by them
    rpn_probs = layers.Activation("softmax", name="rpn_class_xxx", dtype="float32")(rpn_class_logits)
    x = Conv2D(4 * anchors_per_location, 1, name="rpn_bbox_pred")(shared)
    rpn_bbox = layers.Reshape((-1, 4))(x)
    return keras.Model(feature_map, [rpn_class_logits, rpn_probs, rpn_bbox], name="rpn_model")


def fpn_classifier_graph(rois, feature_maps, image_meta, pool_size, num_classes, train_bn=True,
                         fc_layers_size=1024):
    """Classifier and box-regression head.

    rois: ``[batch, num_rois, 4]`` normalized; feature_maps: [P2, P3, P4, P5].
    Returns ``mrcnn_class_logits`` ``[batch, num_rois, num_classes]``, ``mrcnn_class`` (softmax of
    those) and ``mrcnn_bbox`` ``[batch, num_rois, num_classes, (dy, dx, log(dh), log(dw))]``.
    """
    num_rois = rois.shape[1]
    x = PyramidROIAlign((pool_size, pool_size), name="roi_align_classifier")(
        rois, image_meta, feature_maps)
    x = MergeRoiAxis(name="roi_align_classifier_flat")(x)
    x = PooledConv2D(fc_layers_size, pool_size, padding="valid", name="mrcnn_class_conv1")(x)
    x = BatchNorm(train_bn, name="mrcnn_class_bn1")(x)
    x = layers.Activation("relu")(x)
    x = PooledConv2D(fc_layers_size, 1, name="mrcnn_class_conv2")(x)
    x = BatchNorm(train_bn, name="mrcnn_class_bn2")(x)
    x = layers.Activation("relu")(x)
    shared = layers.Reshape((fc_layers_size,), name="pool_squeeze")(x)
    logits = layers.Dense(num_classes, name="mrcnn_class_logits")(shared)
    probs = layers.Activation("softmax", dtype="float32")(logits)  # detection scores, float32
    bbox = layers.Dense(num_classes * 4, name="mrcnn_bbox_fc")(shared)
    mrcnn_class_logits = SplitRoiAxis(num_rois, name="mrcnn_class_logits_split")(logits)
    mrcnn_class = SplitRoiAxis(num_rois, name="mrcnn_class")(probs)
    mrcnn_bbox = SplitRoiAxis(num_rois, shape=(num_classes, 4), name="mrcnn_bbox")(bbox)
    return mrcnn_class_logits, mrcnn_class, mrcnn_bbox


def build_fpn_mask_graph(rois, feature_maps, image_meta, pool_size, num_classes, train_bn=True,
                         head_size=256):
    """Mask head: four 3x3 convolutions (``head_size`` channels), a 2x deconvolution, per-class masks.

    Returns ``[batch, num_rois, 2 * pool_size, 2 * pool_size, num_classes]`` probabilities.
    """
    num_rois = rois.shape[1]
    x = PyramidROIAlign((pool_size, pool_size), name="roi_align_mask")(
        rois, image_meta, feature_maps)
    x = MergeRoiAxis(name="roi_align_mask_flat")(x)
    for i in range(1, 5):
        x = Conv2D(head_size, 3, padding="same", name=f"mrcnn_mask_conv{i}")(x)
        x = BatchNorm(train_bn, name=f"mrcnn_mask_bn{i}")(x)
        x = layers.Activation("relu")(x)
    x = layers.Conv2DTranspose(head_size, 2, strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    x = Conv2D(num_classes, 1, activation="sigmoid", name="mrcnn_mask")(x)
    return SplitRoiAxis(num_rois, name="mrcnn_mask_split")(x, rois)
