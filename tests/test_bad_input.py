"""A corpus of typos and invalid values a Matterport user can make: each is refused with an error naming the
value, before anything is loaded or trained (a typo must not load or train the wrong thing silently)."""

import re

import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn.config import ConfigError
from mrcnn.data.loading import load_image_gt
from tests.conftest import TinyModelConfig, shapes_data


@pytest.fixture(scope="module")
def training_model(tmp_path_factory):
    return modellib.MaskRCNN("training", TinyModelConfig(), str(tmp_path_factory.mktemp("bad")), seed=0)


def test_an_exclude_name_no_layer_has_is_refused_and_nothing_loads(training_model, tmp_path):
    path = str(tmp_path / "weights.h5")
    training_model.save_weights(path)
    layer = training_model.keras_model.get_layer("mrcnn_class_logits")
    before = [w.copy() for w in layer.get_weights()]
    layer.set_weights([np.ones_like(w) for w in before])
    with pytest.raises(ValueError, match=r"'mrcnn_class_logitz' \(did you mean 'mrcnn_class_logits'\?\)"):
        training_model.load_weights(path, by_name=True, exclude=["mrcnn_class_logitz", "mrcnn_bbox_fc"])
    assert all((w == 1).all() for w in layer.get_weights())  # nothing was loaded
    training_model.load_weights(path, by_name=True, exclude=["mrcnn_class_logits"])  # the right name loads
    assert all((w == 1).all() for w in layer.get_weights())  # ... the rest, not the excluded layer


@pytest.mark.parametrize("layers", ["6+", "mrcnn_nothing.*", "("])
def test_a_layers_preset_or_regex_that_selects_nothing_is_refused(training_model, layers):
    dataset = shapes_data(2, seed=0)
    with pytest.raises(ValueError, match=re.escape(f"layers={layers!r}")):
        training_model.train(dataset, dataset, learning_rate=0.01, epochs=1, layers=layers, verbose=0)


@pytest.mark.parametrize("learning_rate", [-1, 0, float("nan"), "fast", None, True])
def test_a_learning_rate_that_is_not_a_positive_number_is_refused(training_model, learning_rate):
    dataset = shapes_data(2, seed=0)
    with pytest.raises(ValueError, match=re.escape(f"learning_rate={learning_rate!r}")):
        training_model.train(dataset, dataset, learning_rate=learning_rate, epochs=1, layers="heads", verbose=0)


def test_a_mask_shape_the_mask_head_cannot_make_is_refused():
    with pytest.raises(ConfigError, match=r"MASK_SHAPE=\[27, 27\].*twice MASK_POOL_SIZE=14"):
        TinyModelConfig(MASK_SHAPE=[27, 27])
    assert list(TinyModelConfig(MASK_POOL_SIZE=7, MASK_SHAPE=[14, 14]).MASK_SHAPE) == [14, 14]


def test_a_detection_rule_that_is_not_a_bool_is_refused():
    with pytest.raises(ConfigError, match=r"DETECTION_EVERY_CLASS='False'"):
        TinyModelConfig(DETECTION_EVERY_CLASS="False")  # a string would be true
    assert TinyModelConfig(DETECTION_EVERY_CLASS=True).DETECTION_EVERY_CLASS is True


def test_class_ids_beyond_num_classes_are_refused_naming_the_image():
    config = TinyModelConfig()
    dataset = shapes_data(2, seed=0)
    load_mask = dataset.load_mask
    dataset.load_mask = lambda image_id: (load_mask(image_id)[0],
                                          np.full(len(load_mask(image_id)[1]), config.NUM_CLASSES, np.int32))
    with pytest.raises(ValueError, match=f"class id {config.NUM_CLASSES}, but NUM_CLASSES={config.NUM_CLASSES}"):
        load_image_gt(dataset, config, 0)


def test_matterports_own_exclude_list_is_accepted(training_model, tmp_path):
    """Matterport's README excludes "mrcnn_bbox", a layer without weights: a name the model has."""
    path = str(tmp_path / "weights.h5")
    training_model.save_weights(path)
    report = training_model.load_weights(path, by_name=True, exclude=[
        "mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"])
    assert "mrcnn_class_logits" not in report.loaded and "mrcnn_mask_conv1" in report.loaded
