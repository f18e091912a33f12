"""CityscapesConfig, the training schedule, starting weights and overlay pictures (no network)."""

import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn.config import ConfigError
from mrcnn.visualize import draw_instances
from samples.cityscapes import jobs
from samples.cityscapes.config import CityscapesConfig, CityscapesInferenceConfig, inference_config
from samples.cityscapes.dataset import INSTANCE_CLASSES
from tests.conftest import TinyModelConfig


def test_config_defaults_for_1024x2048_frames():
    config = CityscapesConfig()
    assert config.NAME == "cityscapes"
    assert config.NUM_CLASSES == 9 and len(config.CLASSES) == 8 and "caravan" not in config.CLASSES
    assert config.IMAGE_RESIZE_MODE == "crop" and list(config.IMAGE_SHAPE) == [1024, 1024, 3]
    # Inference keeps the whole frame at full resolution.
    model_config = CityscapesInferenceConfig()
    frame = np.zeros((1024, 2048, 3), np.uint8)
    molded, window, scale, _, _ = __import__("mrcnn").utils.resize_image(
        frame, min_dim=model_config.IMAGE_MIN_DIM, max_dim=model_config.IMAGE_MAX_DIM,
        min_scale=model_config.IMAGE_MIN_SCALE, mode=model_config.IMAGE_RESIZE_MODE)
    assert molded.shape == (1024, 2048, 3) and scale == 1 and tuple(window) == (0, 0, 1024, 2048)


def test_ten_class_option_and_class_count_checked():
    config = CityscapesConfig(CLASSES=INSTANCE_CLASSES, NUM_CLASSES=11)
    assert {"caravan", "trailer"} <= set(config.CLASSES) and len(config.CLASSES) == 10
    with pytest.raises(ConfigError, match="NUM_CLASSES"):
        CityscapesConfig(CLASSES=INSTANCE_CLASSES)
    with pytest.raises(ConfigError, match="tractor"):
        CityscapesConfig(CLASSES=("car", "tractor"), NUM_CLASSES=3)


def test_inference_config_keeps_the_model_settings():
    config = CityscapesConfig(CLASSES=INSTANCE_CLASSES, NUM_CLASSES=11, BACKBONE="resnet50")
    twin = inference_config(config)
    assert twin.IMAGE_RESIZE_MODE == "pad64" and twin.BATCH_SIZE == 1
    assert twin.NUM_CLASSES == 11 and twin.BACKBONE == "resnet50" and twin.CLASSES == INSTANCE_CLASSES


def test_schedule_parsing_and_rescaling():
    assert jobs.parse_schedule(jobs.DEFAULT_SCHEDULE, learning_rate=0.01) == [
        ("heads", 40, 0.01), ("4+", 120, 0.01), ("all", 160, 0.001)]
    assert [(s, e) for s, e, _ in jobs.parse_schedule(jobs.DEFAULT_SCHEDULE, epochs=8)] == [
        ("heads", 2), ("4+", 6), ("all", 8)]
    # Fewer epochs than stages: every stage that remains gets at least one epoch, the last ends there.
    assert [(s, e) for s, e, _ in jobs.parse_schedule(jobs.DEFAULT_SCHEDULE, epochs=2)] == [("4+", 1), ("all", 2)]
    assert jobs.parse_schedule("all:3")[0][:2] == ("all", 3)
    for bad in ("heads", "heads:x", "heads:4,all:2", "all:0", ""):
        with pytest.raises(jobs.ScheduleError, match="schedule"):
            jobs.parse_schedule(bad)


def test_schedule_with_warm_up_and_decay():
    text = "warmup:500,all:20,all:30:0.1"  # warm-up, then a step decay at epoch 20
    assert jobs.parse_schedule(text, learning_rate=0.02) == [("all", 20, 0.02), ("all", 30, 0.002)]
    assert jobs.warmup_steps(text) == 500 and jobs.warmup_steps(jobs.DEFAULT_SCHEDULE) == 0
    for bad in ("warmup:x,all:3", "warmup:5,warmup:6,all:3", "warmup:,all:3"):
        with pytest.raises(jobs.ScheduleError, match="warmup"):
            jobs.parse_schedule(bad)


def test_staged_training_skips_stages_a_resumed_run_finished(tmp_path, shapes_dataset, capsys):
    model = modellib.MaskRCNN("training", TinyModelConfig(), tmp_path, seed=0)
    calls = []
    model.train = lambda train, val, learning_rate, epochs, layers, **kwargs: calls.append(
        (layers, epochs, learning_rate))
    model.epoch = 2
    jobs.train_stages(model, shapes_dataset, shapes_dataset, [("heads", 2, 0.1), ("4+", 5, 0.1), ("all", 7, 0.01)])
    assert calls == [("4+", 5, 0.1), ("all", 7, 0.01)]
    assert "already done" in capsys.readouterr().out


def _save_tiny_model(path, num_classes):
    model = modellib.MaskRCNN("training", TinyModelConfig(NUM_CLASSES=num_classes), path.parent, seed=1)
    model.save_weights(str(path))
    return model


def test_coco_weights_load_with_the_heads_excluded(tmp_path, monkeypatch):
    coco_file = tmp_path / "mask_rcnn_coco.h5"
    source = _save_tiny_model(coco_file, num_classes=81)   # COCO's 80 classes + background
    monkeypatch.setenv("MRCNN_COCO_WEIGHTS", str(coco_file))
    model = modellib.MaskRCNN("training", TinyModelConfig(NUM_CLASSES=9), tmp_path / "logs", seed=2)
    assert jobs.initial_weights(model, "coco") == str(coco_file)
    for name in ("res1_tiny_a", "fpn_p2", "rpn_model", "mrcnn_class_conv1", "mrcnn_mask_conv1"):
        for mine, theirs in zip(model.keras_model.get_layer(name).get_weights(),
                                source.keras_model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    assert model.keras_model.get_layer("mrcnn_class_logits").get_weights()[0].shape[-1] == 9


def test_coco_weights_offline_say_what_to_do(tmp_path, monkeypatch):
    target = tmp_path / "weights" / "mask_rcnn_coco.h5"
    monkeypatch.setenv("MRCNN_COCO_WEIGHTS", str(target))
    monkeypatch.setenv("MRCNN_COCO_WEIGHTS_URL", "http://127.0.0.1:9/mask_rcnn_coco.h5")  # refused at once
    model = modellib.MaskRCNN("training", TinyModelConfig(), tmp_path / "logs")
    with pytest.raises(jobs.WeightsChoiceError) as error:
        jobs.initial_weights(model, "coco")
    message = str(error.value)
    for expected in ("mask_rcnn_coco.h5", str(target), "github.com/matterport", "--weights=/path/to",
                     "--weights=none"):
        assert expected in message
    assert not target.exists() and not list((tmp_path / "weights").glob("*"))  # no partial download left


def test_other_weight_choices(tmp_path):
    model = modellib.MaskRCNN("training", TinyModelConfig(), tmp_path / "logs")
    assert jobs.initial_weights(model, "none") is None
    with pytest.raises(jobs.WeightsChoiceError, match="Train first"):
        jobs.initial_weights(model, "last")
    with pytest.raises(jobs.WeightsChoiceError, match="no such file"):
        jobs.initial_weights(model, str(tmp_path / "missing.h5"))
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(jobs.WeightsChoiceError, match="junk.h5"):
        jobs.initial_weights(model, str(tmp_path / "junk.h5"))
    # A checkpoint of a run: loaded whole (heads too), and the run's epoch is restored.
    run = tmp_path / "logs" / "tinymodel20260101T1200"
    run.mkdir(parents=True)
    source = _save_tiny_model(run / "mask_rcnn_tinymodel_0003.h5", num_classes=4)
    assert jobs.initial_weights(model, "last").endswith("mask_rcnn_tinymodel_0003.h5")
    assert model.epoch == 3
    np.testing.assert_array_equal(model.keras_model.get_layer("mrcnn_class_logits").get_weights()[0],
                                  source.keras_model.get_layer("mrcnn_class_logits").get_weights()[0])


def test_draw_instances_paints_masks_and_boxes_where_they_are():
    image = np.full((60, 90, 3), 100, np.uint8)
    masks = np.zeros((60, 90, 2), bool)
    masks[30:50, 10:30, 0] = True
    masks[35:55, 50:80, 1] = True
    boxes = np.array([[30, 10, 50, 30], [35, 50, 55, 80]])
    colors = [(0, 0, 0), (1.0, 0, 0), (0, 0, 1.0)]
    picture = draw_instances(image, boxes, masks, [1, 2], ["BG", "car", "person"], [0.9, 0.8], colors=colors,
                             show_boxes=True)
    assert picture.shape == image.shape and picture.dtype == np.uint8
    # Inside each mask (away from box edge and label): the image blended half-way to the class colour.
    np.testing.assert_array_equal(picture[45, 20], [177, 50, 50])
    np.testing.assert_array_equal(picture[50, 65], [50, 50, 177])
    # The box outline in the class colour; far from every instance, the image untouched.
    np.testing.assert_array_equal(picture[54, 79], [0, 0, 255])
    np.testing.assert_array_equal(picture[5, 85], [100, 100, 100])
    assert (picture[:, :, :][~masks.any(-1)] != 100).sum() < 0.35 * (~masks.any(-1)).sum() * 3
    with pytest.raises(ValueError, match="masks"):
        draw_instances(image, boxes, masks[:, :, :1], [1, 2], ["BG", "car", "person"])
