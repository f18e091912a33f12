"""ResNet-50/101 and the feature pyramid (FPN), with Matterport's layer names.

Caffe-style bottlenecks as Matterport (and the original MSRA weights): the stride sits on the first 1x1
convolution of a block, convolutions carry biases, and every convolution is followed by a batch norm.
Layer names (``conv1``, ``bn_conv1``, ``res4b_branch2a``, ``bn4b_branch2a``, ``res4b_out``, ``fpn_c5p5``,
``fpn_p2``...) are the ones stored in ``mask_rcnn_coco.h5``; ``load_weights(by_name=True)`` relies on them.
"""

from __future__ import annotations

import keras
from keras import layers
from keras.layers import Conv2D


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(layers.BatchNormalization):
    """Batch normalization whose training behaviour is fixed at construction.

    ``train_bn=False`` (Matterport's default, ``Config.TRAIN_BN``) always normalizes with the stored
    moving statistics, in training too: batches of one or two images give poor batch statistics. Gamma
    and beta stay trainable unless the layer is frozen.
    """

    def __init__(self, train_bn=None, **kwargs):
        super().__init__(**kwargs)
        self.train_bn = train_bn

    def call(self, inputs, training=None):
        if self.train_bn is not None:
            training = bool(training) and self.train_bn
        return super().call(inputs, training=training)

    def get_config(self):
        return {**super().get_config(), "train_bn": self.train_bn}


RESNET_BLOCKS = {"resnet50": 5, "resnet101": 22}  # identity blocks in stage 4


def _bottleneck(input_tensor, kernel_size, filters, stage, block, train_bn, strides=None, attention=None):
    """A bottleneck block; with ``strides`` it is a projection ("conv") block, else an identity block.

    attention: None, or the keyword arguments of ``attention.LocalSelfAttention2D`` (``kernel_size``,
    ``heads``, ``projection``) to replace the 3x3 convolution by local self-attention, named
    ``res<stage><block>_attention2b`` / ``bn<stage><block>_attention2b``: caught by the ``3+``..
    ``5+`` presets, and in no weight file of the convolutional model, so those load around it.
    """
    f1, f2, f3 = filters
    conv_name = f"res{stage}{block}_branch"
    bn_name = f"bn{stage}{block}_branch"
    x = Conv2D(f1, 1, strides=strides or 1, name=conv_name + "2a")(input_tensor)
    x = BatchNorm(train_bn, name=bn_name + "2a")(x)
    x = layers.Activation("relu")(x)
    if attention is None:
        x = Conv2D(f2, kernel_size, padding="same", name=conv_name + "2b")(x)
        x = BatchNorm(train_bn, name=bn_name + "2b")(x)
    else:
        from attention import LocalSelfAttention2D

        # The stride rule: the paper's ResNets (torchvision-style) stride the 3x3 convolution, and their
        # attention layer takes that stride as attention at stride 1 followed by 2x2 average pooling. This
        # backbone is Caffe-style (Matterport's, and the MSRA weights'): the stride sits on the first 1x1
        # convolution above, so the attention always runs at stride 1, after the downsampling.
        x = LocalSelfAttention2D(f2, **attention, name=f"res{stage}{block}_attention2b")(x)
        x = BatchNorm(train_bn, name=f"bn{stage}{block}_attention2b")(x)
    x = layers.Activation("relu")(x)
    x = Conv2D(f3, 1, name=conv_name + "2c")(x)
    x = BatchNorm(train_bn, name=bn_name + "2c")(x)
    if strides is None:
        shortcut = input_tensor
    else:
        shortcut = Conv2D(f3, 1, strides=strides, name=conv_name + "1")(input_tensor)
        shortcut = BatchNorm(train_bn, name=bn_name + "1")(shortcut)
    x = layers.Add()([x, shortcut])
    return layers.Activation("relu", name=f"res{stage}{block}_out")(x)


def conv_block(input_tensor, kernel_size, filters, stage, block, strides=(2, 2), train_bn=True, attention=None):
    """Bottleneck with a projection shortcut (Matterport's ``conv_block``)."""
    return _bottleneck(input_tensor, kernel_size, filters, stage, block, train_bn, strides=strides,
                       attention=attention)


def identity_block(input_tensor, kernel_size, filters, stage, block, train_bn=True, attention=None):
    """Bottleneck with an identity shortcut (Matterport's ``identity_block``)."""
    return _bottleneck(input_tensor, kernel_size, filters, stage, block, train_bn, attention=attention)


def resnet_graph(input_image, architecture, stage5=False, train_bn=True, width=64, attention_stages=(),
                 attention_kernel=7, attention_heads=8, attention_projection="grouped"):
    """ResNet feature maps ``[C1, C2, C3, C4, C5]`` (C5 is None without ``stage5``).

    architecture: "resnet50" or "resnet101". Strides of C1..C5 are 4, 4, 8, 16, 32.
    width: channels of conv1 and of stage 2's 3x3 convolutions (64 in ResNet and in Matterport's weights);
    every stage scales with it (stage s has ``width * 2**(s-2)`` bottleneck and 4x that output channels).
    attention_stages: stages (2-5) whose bottlenecks use local self-attention
    (``attention.LocalSelfAttention2D(kernel_size=attention_kernel, heads=attention_heads,
    projection=attention_projection)``) instead of their 3x3 convolution, at stride 1 (the block's stride
    is on its first 1x1 convolution); the stem and the 1x1 convolutions stay.
    """
    if architecture not in RESNET_BLOCKS:
        raise ValueError(f"resnet_graph: architecture must be one of {sorted(RESNET_BLOCKS)}, "
                         f"got {architecture!r}")
    x = layers.ZeroPadding2D((3, 3))(input_image)
    w = int(width)
    # Per stage: the blocks' batch-norm mode and their attention (None: the 3x3 convolution)
    opts = {stage: {"train_bn": train_bn,
                    "attention": ({"kernel_size": attention_kernel, "heads": attention_heads,
                                   "projection": attention_projection} if stage in attention_stages else None)}
            for stage in (2, 3, 4, 5)}
    x = Conv2D(w, 7, strides=2, name="conv1")(x)
    x = BatchNorm(train_bn, name="bn_conv1")(x)
    x = layers.Activation("relu")(x)
    c1 = x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    # Stage 2
    x = conv_block(x, 3, [w, w, 4 * w], stage=2, block="a", strides=(1, 1), **opts[2])
    x = identity_block(x, 3, [w, w, 4 * w], stage=2, block="b", **opts[2])
    c2 = x = identity_block(x, 3, [w, w, 4 * w], stage=2, block="c", **opts[2])
    # Stage 3
    x = conv_block(x, 3, [2 * w, 2 * w, 8 * w], stage=3, block="a", **opts[3])
    for block in "bcd":
        x = identity_block(x, 3, [2 * w, 2 * w, 8 * w], stage=3, block=block, **opts[3])
    c3 = x
    # Stage 4
    x = conv_block(x, 3, [4 * w, 4 * w, 16 * w], stage=4, block="a", **opts[4])
    for i in range(RESNET_BLOCKS[architecture]):
        x = identity_block(x, 3, [4 * w, 4 * w, 16 * w], stage=4, block=chr(98 + i), **opts[4])
    c4 = x
    # Stage 5
    c5 = None
    if stage5:
        x = conv_block(x, 3, [8 * w, 8 * w, 32 * w], stage=5, block="a", **opts[5])
        x = identity_block(x, 3, [8 * w, 8 * w, 32 * w], stage=5, block="b", **opts[5])
        c5 = identity_block(x, 3, [8 * w, 8 * w, 32 * w], stage=5, block="c", **opts[5])
    return [c1, c2, c3, c4, c5]


def fpn_graph(c2, c3, c4, c5, pyramid_size):
    """Feature pyramid ``[P2, P3, P4, P5, P6]``, each with ``pyramid_size`` channels.

    Top-down: 1x1 lateral convolutions added to the 2x-upsampled coarser level, then a 3x3 convolution
    per level; P6 is P5 subsampled by 2 (used only by the RPN).
    """
    p5 = Conv2D(pyramid_size, 1, name="fpn_c5p5")(c5)
    p4 = layers.Add(name="fpn_p4add")([
        layers.UpSampling2D(2, name="fpn_p5upsampled")(p5),
        Conv2D(pyramid_size, 1, name="fpn_c4p4")(c4)])
    p3 = layers.Add(name="fpn_p3add")([
        layers.UpSampling2D(2, name="fpn_p4upsampled")(p4),
        Conv2D(pyramid_size, 1, name="fpn_c3p3")(c3)])
    p2 = layers.Add(name="fpn_p2add")([
        layers.UpSampling2D(2, name="fpn_p3upsampled")(p3),
        Conv2D(pyramid_size, 1, name="fpn_c2p2")(c2)])
    p2 = Conv2D(pyramid_size, 3, padding="same", name="fpn_p2")(p2)
    p3 = Conv2D(pyramid_size, 3, padding="same", name="fpn_p3")(p3)
    p4 = Conv2D(pyramid_size, 3, padding="same", name="fpn_p4")(p4)
    p5 = Conv2D(pyramid_size, 3, padding="same", name="fpn_p5")(p5)
    p6 = layers.MaxPooling2D(pool_size=1, strides=2, name="fpn_p6")(p5)
    return [p2, p3, p4, p5, p6]
