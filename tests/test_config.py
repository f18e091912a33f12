import numpy as np
import pytest

from mrcnn.config import Config, ConfigError


class ShapesConfig(Config):
    NAME = "shapes"
    NUM_CLASSES = 4
    IMAGES_PER_GPU = 3


def test_matterport_defaults_and_derived_values():
    config = ShapesConfig()
    assert config.BACKBONE == "resnet101"
    assert config.BACKBONE_STRIDES == [4, 8, 16, 32, 64]
    assert config.RPN_ANCHOR_SCALES == (32, 64, 128, 256, 512)
    assert config.POST_NMS_ROIS_TRAINING == 2000 and config.POST_NMS_ROIS_INFERENCE == 1000
    assert config.PRE_NMS_LIMIT == 6000
    assert config.MINI_MASK_SHAPE == (56, 56) and config.MASK_SHAPE == [28, 28]
    assert config.TRAIN_ROIS_PER_IMAGE == 200 and config.ROI_POSITIVE_RATIO == 0.33
    assert config.DETECTION_MIN_CONFIDENCE == 0.7 and config.DETECTION_NMS_THRESHOLD == 0.3
    assert config.GRADIENT_CLIP_NORM == 5.0 and config.TRAIN_BN is False
    np.testing.assert_allclose(config.MEAN_PIXEL, [123.7, 116.8, 103.9])
    assert config.BATCH_SIZE == 3
    assert config.IMAGE_SHAPE.tolist() == [1024, 1024, 3]
    assert config.IMAGE_META_SIZE == 1 + 3 + 3 + 4 + 1 + 4
    assert config.feature_shapes().tolist() == [[256, 256], [128, 128], [64, 64], [32, 32], [16, 16]]


def test_crop_mode_image_shape_uses_min_dim():
    config = ShapesConfig(IMAGE_RESIZE_MODE="crop", IMAGE_MIN_DIM=512)
    assert config.IMAGE_SHAPE.tolist() == [512, 512, 3]


def test_keyword_overrides_apply_to_one_instance():
    config = ShapesConfig(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.5)
    assert config.BATCH_SIZE == 1 and config.DETECTION_MIN_CONFIDENCE == 0.5
    assert ShapesConfig().IMAGES_PER_GPU == 3


@pytest.mark.parametrize("overrides, attribute, value", [
    ({"IMAGE_MAX_DIM": 1000}, "IMAGE_MAX_DIM", "1000"),
    ({"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 500}, "IMAGE_MIN_DIM", "500"),
    ({"NUM_CLASSES": 1}, "NUM_CLASSES", "1"),
    ({"IMAGE_RESIZE_MODE": "stretch"}, "IMAGE_RESIZE_MODE", "'stretch'"),
    ({"BACKBONE": "resnet18"}, "BACKBONE", "'resnet18'"),
    ({"RPN_ANCHOR_SCALES": (32, 64)}, "RPN_ANCHOR_SCALES", "(32, 64)"),
    ({"IMAGES_PER_GPU": 0}, "IMAGES_PER_GPU", "0"),
    ({"ROI_POSITIVE_RATIO": 1.5}, "ROI_POSITIVE_RATIO", "1.5"),
    ({"MEAN_PIXEL": np.array([1.0, 2.0])}, "MEAN_PIXEL", "array([1., 2.])"),
    ({"LOSS_WEIGHTS": {"rpn_class_loss": 1.0}}, "LOSS_WEIGHTS", "rpn_class_loss"),
])
def test_invalid_settings_name_attribute_and_value(overrides, attribute, value):
    with pytest.raises(ConfigError) as error:
        ShapesConfig(**overrides)
    message = str(error.value)
    assert f"ShapesConfig.{attribute}=" in message
    assert value in message


def test_base_config_needs_num_classes():
    with pytest.raises(ConfigError, match="NUM_CLASSES=1"):
        Config()


def test_unknown_override_is_an_error():
    with pytest.raises(ConfigError, match="IMAGE_MAX_DIMS"):
        ShapesConfig(IMAGE_MAX_DIMS=512)


def test_callable_backbone_is_accepted_and_listed():
    def backbone(image, stage5=True, train_bn=None):
        return []

    config = ShapesConfig(BACKBONE=backbone)
    assert config.to_dict()["BACKBONE"] is backbone
    assert config.feature_shapes([256, 256]).tolist() == [[64, 64], [32, 32], [16, 16], [8, 8], [4, 4]]
    config = ShapesConfig(BACKBONE=backbone, COMPUTE_BACKBONE_SHAPE=lambda shape: [[7, 7]] * 5)
    assert config.feature_shapes().tolist() == [[7, 7]] * 5


def test_to_dict_and_display(capsys):
    config = ShapesConfig()
    settings = config.to_dict()
    assert settings["NAME"] == "shapes"
    assert settings["BATCH_SIZE"] == 3
    assert all(key.isupper() for key in settings)
    config.display()
    out = capsys.readouterr().out
    assert "IMAGE_META_SIZE" in out and "shapes" in out


def test_a_subclass_asking_for_external_rois_is_refused():
    """Matterport's USE_RPN_ROIS=False trained the heads on ROIs made by code; that mode is not carried over, so
    a config asking for it is refused rather than silently trained on the RPN's proposals."""
    class External(Config):
        NAME = "external"
        NUM_CLASSES = 2
        USE_RPN_ROIS = False

    with pytest.raises(ConfigError, match="USE_RPN_ROIS"):
        External()

    class Default(Config):
        NAME = "default"
        NUM_CLASSES = 2
        USE_RPN_ROIS = True

    Default()
