"""Attention in the ResNet graph: Config fields, layer names, presets, and loading convolutional weights."""

import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn.config import ConfigError
from mrcnn.training import layers_regex
from tests.conftest import TinyConfig

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)


class SmallResNetConfig(TinyConfig):
    """A real ResNet-50 graph, narrow (width 16) and on 64x64 images, so it builds in seconds."""

    NAME = "smallresnet"
    BACKBONE = "resnet50"
    RESNET_WIDTH = 16
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 64
    IMAGES_PER_GPU = 1
    RPN_ANCHOR_SCALES = (4, 8, 16, 32, 64)
    POST_NMS_ROIS_TRAINING = 50
    POST_NMS_ROIS_INFERENCE = 20
    TRAIN_ROIS_PER_IMAGE = 8
    DETECTION_MAX_INSTANCES = 5
    FPN_CLASSIF_FC_LAYERS_SIZE = 32
    TOP_DOWN_PYRAMID_SIZE = 32
    MASK_HEAD_SIZE = 16


def test_config_checks_the_attention_fields():
    assert SmallResNetConfig().ATTENTION_STAGES == ()
    config = SmallResNetConfig(ATTENTION_STAGES=(4, 5), ATTENTION_HEADS=4, ATTENTION_KERNEL=5)
    assert config.ATTENTION_STAGES == (4, 5)
    for overrides, name in [({"ATTENTION_STAGES": (1,)}, "ATTENTION_STAGES"),
                            ({"ATTENTION_STAGES": (4, 4)}, "ATTENTION_STAGES"),
                            ({"ATTENTION_STAGES": (4,), "ATTENTION_KERNEL": 4}, "ATTENTION_KERNEL"),
                            ({"ATTENTION_STAGES": (4,), "ATTENTION_PROJECTION": "dense"}, "ATTENTION_PROJECTION"),
                            # stage 2 of a width-16 ResNet has 16 channels: 8 heads of depth 2 fit,
                            # 16 heads of depth 1 do not (half rows, half columns)
                            ({"ATTENTION_STAGES": (2,), "ATTENTION_HEADS": 16}, "ATTENTION_HEADS"),
                            ({"ATTENTION_STAGES": (3,), "ATTENTION_HEADS": 3}, "ATTENTION_HEADS")]:
        with pytest.raises(ConfigError, match=name):
            SmallResNetConfig(**overrides)
    SmallResNetConfig(ATTENTION_STAGES=(2,), ATTENTION_HEADS=8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    conv = modellib.MaskRCNN("training", SmallResNetConfig(), logs, seed=0)
    attn = modellib.MaskRCNN("training", SmallResNetConfig(ATTENTION_STAGES=(4, 5), ATTENTION_HEADS=4), logs,
                             seed=1)
    path = str(logs / "conv.h5")
    conv.save_weights(path)
    return conv, attn, path


def test_attention_replaces_the_3x3_convolutions_of_the_chosen_stages(models):
    _, attn, _ = models
    names = {layer.name for layer in attn.keras_model.layers}
    blocks4 = ["a", "b", "c", "d", "e", "f"]
    for block in blocks4:
        assert f"res4{block}_attention2b" in names and f"bn4{block}_attention2b" in names
        assert f"res4{block}_branch2b" not in names and f"bn4{block}_branch2b" not in names
        assert f"res4{block}_branch2a" in names and f"res4{block}_branch2c" in names   # 1x1 convs stay
    for block in "abc":
        assert f"res5{block}_attention2b" in names
        assert f"res3{block}_branch2b" in names and f"res3{block}_attention2b" not in names
    layer = attn.keras_model.get_layer("res4b_attention2b")
    assert (layer.filters, layer.kernel_size, layer.heads) == (64, 7, 4)


def test_presets_catch_the_attention_layers():
    import re

    for preset, expected in [("3+", {"res4b_attention2b", "bn5a_attention2b"}),
                             ("4+", {"res4b_attention2b", "bn4b_attention2b", "res5c_attention2b"}),
                             ("5+", {"res5c_attention2b", "bn5a_attention2b"})]:
        regex = layers_regex(preset)
        assert all(re.fullmatch(regex, name) for name in expected), preset
    assert not re.fullmatch(layers_regex("5+"), "res4b_attention2b")
    assert not re.fullmatch(layers_regex("heads"), "res5c_attention2b")


def test_convolutional_weights_load_around_the_attention_layers(models):
    conv, attn, path = models
    report = attn.load_weights(path, by_name=True)
    attention_layers = {layer.name for layer in attn.keras_model.layers if "attention2b" in layer.name}
    assert len(attention_layers) == 2 * (6 + 3)
    assert set(report.not_in_file) == attention_layers          # exactly the new layers stay new
    replaced = [f"{kind}{stage}{block}_branch2b" for kind in ("res", "bn")
                for stage, blocks in ((4, "abcdef"), (5, "abc")) for block in blocks]
    assert set(report.not_in_model) == set(replaced)           # the 3x3 convolutions they replace
    for name in ("conv1", "res4a_branch2a", "res5c_branch2c", "fpn_p3", "mrcnn_mask"):
        for mine, theirs in zip(attn.keras_model.get_layer(name).get_weights(),
                                conv.keras_model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)


def test_attention_model_detects(tmp_path):
    config = SmallResNetConfig(ATTENTION_STAGES=(4, 5), ATTENTION_HEADS=4, IMAGE_RESIZE_MODE="pad64",
                               IMAGE_MIN_DIM=64)
    model = modellib.MaskRCNN("inference", config, tmp_path)
    image = np.random.default_rng(0).integers(0, 255, (70, 100, 3), dtype=np.uint8)
    result = model.detect([image])[0]
    assert result["masks"].shape[:2] == (70, 100)
    assert np.isfinite(result["scores"]).all()
