"""Matterport's own spelling of the API its notebooks and samples call, at tiny sizes.

Each test calls one API as Matterport's code does (names, arguments) and checks the return shapes and meaning
Matterport's code expects. Written here from Matterport's documented behaviour, not copied from it.
"""

import logging

import numpy as np
import pytest

import mrcnn.model as modellib
from mrcnn import utils
from mrcnn.model import log  # every Matterport notebook's first cell
from tests.conftest import TinyModelConfig


@pytest.fixture(scope="module")
def inference(tmp_path_factory):
    config = TinyModelConfig(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.0)
    return modellib.MaskRCNN(mode="inference", config=config, model_dir=str(tmp_path_factory.mktemp("logs")))


def test_log_prints_shape_min_max_and_dtype(capsys):
    log("image", np.arange(6, dtype=np.float32).reshape(2, 3))
    log("empty", np.zeros((0, 4)))
    log("just text")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("image".ljust(25)) and "shape: (2, 3)" in lines[0]
    assert "min:    0.00000  max:    5.00000  float32" in lines[0]
    assert "shape: (0, 4)" in lines[1] and "float64" in lines[1] and lines[2] == "just text"


def test_compute_backbone_shapes():
    config = TinyModelConfig()
    shapes = modellib.compute_backbone_shapes(config, config.IMAGE_SHAPE)
    assert shapes.tolist() == [[32, 32], [16, 16], [8, 8], [4, 4], [2, 2]]
    assert modellib.compute_backbone_shapes(config, (100, 60, 3)).tolist()[0] == [25, 15]


def test_get_anchors_keeps_the_pixel_anchors_in_model_anchors(inference):
    normalized = inference.get_anchors(inference.config.IMAGE_SHAPE)
    pixels = inference.anchors
    assert pixels.shape == normalized.shape and pixels.shape[1] == 4
    np.testing.assert_allclose(utils.norm_boxes(pixels, (128, 128)), normalized, atol=1e-6)
    assert pixels.max() > 64  # pixel units, not normalized


def test_get_trainable_layers(inference):
    layers = inference.get_trainable_layers()
    names = [layer.name for layer in layers]
    assert "rpn_model" in names and "mrcnn_mask" in names and "mrcnn_class_logits" in names
    assert all(layer.weights for layer in layers) and "ROI" not in names


def test_load_image_gt_with_matterports_arguments(shapes_dataset, caplog):
    config = TinyModelConfig()
    image, meta, class_ids, bbox, mask = modellib.load_image_gt(shapes_dataset, config, 0)
    assert mask.shape == (128, 128, len(class_ids))  # use_mini_mask is False by default, as Matterport
    with caplog.at_level(logging.WARNING):
        flipped = [modellib.load_image_gt(shapes_dataset, config, 0, augment=True, use_mini_mask=True)
                   for _ in range(12)]
    assert "'augment' is deprecated" in caplog.text
    assert all(f[4].shape == tuple(config.MINI_MASK_SHAPE) + (len(class_ids),) for f in flipped)
    mirrored = [np.array_equal(f[0], image[:, ::-1]) for f in flipped]
    assert any(mirrored) and not all(mirrored)  # a flip half of the time
    for f in flipped:
        assert np.array_equal(f[0], image[:, ::-1]) or np.array_equal(f[0], image)


def test_run_graph_per_roi_outputs_keep_the_batch_axis(inference, shapes_dataset):
    config = inference.config
    out = inference.run_graph([shapes_dataset.load_image(0)], [
        ("mrcnn_class", "mrcnn_class"), ("mrcnn_bbox", "mrcnn_bbox"), ("mrcnn_mask", "mrcnn_mask"),
        ("detections", "mrcnn_detection"), ("proposals", "ROI")])
    rois, classes = config.POST_NMS_ROIS_INFERENCE, config.NUM_CLASSES
    assert out["mrcnn_class"].shape == (1, rois, classes)
    assert out["mrcnn_bbox"].shape == (1, rois, classes, 4)
    assert out["mrcnn_mask"].shape == (1, config.DETECTION_MAX_INSTANCES, 28, 28, classes)
    assert out["detections"].shape == (1, config.DETECTION_MAX_INSTANCES, 6) and out["proposals"].shape == (1, rois, 4)


def test_ancestor_gives_the_named_layers_output_or_says_what_to_use(inference):
    model = inference.keras_model
    roi = inference.ancestor(model.get_layer("mrcnn_detection").output, "ROI/rpn_non_max_suppression:0")
    assert roi is model.get_layer("ROI").output
    with pytest.raises(ValueError, match="no layer 'nowhere'.*run_graph"):
        inference.ancestor(None, "nowhere/op:0")


def test_cityscapes_script_keeps_its_dataset_class():
    from samples.cityscapes import cityscapes
    from samples.cityscapes.dataset import CityscapesDataset

    assert cityscapes.CityscapesDataset is CityscapesDataset


def test_data_generator_debugging_outputs(shapes_dataset):
    config = TinyModelConfig(TRAIN_ROIS_PER_IMAGE=16, ROI_POSITIVE_RATIO=0.33)
    generator = modellib.data_generator(shapes_dataset, config, shuffle=True, random_rois=2000, batch_size=2,
                                        detection_targets=True, seed=0)
    inputs, outputs = next(generator)
    assert len(inputs) == 9 and len(outputs) == 3
    rpn_rois, rois = inputs[7], inputs[8]
    class_ids, bboxes, masks = outputs
    assert rpn_rois.shape == (2, 2000, 4) and rpn_rois.dtype == np.int32
    assert (rpn_rois[..., 2] > rpn_rois[..., 0]).all() and (rpn_rois[..., 3] > rpn_rois[..., 1]).all()
    assert rois.shape == (2, 16, 4) and class_ids.shape == (2, 16, 1)
    assert bboxes.shape == (2, 16, config.NUM_CLASSES, 4)
    assert masks.shape == (2, 16) + tuple(config.MASK_SHAPE) + (config.NUM_CLASSES,)
    for b in range(2):
        n = int(np.count_nonzero(inputs[4][b]))
        gt_boxes, gt_ids = inputs[5][b, :n], inputs[4][b, :n]
        iou = utils.compute_overlaps(rois[b], gt_boxes)
        positive = class_ids[b, :, 0] > 0
        assert 1 <= positive.sum() <= int(16 * 0.33)  # 90% of the 2000 random ROIs surround the objects
        assert (iou[positive].max(axis=1) > 0.5).all() and (iou[~positive].max(axis=1) < 0.5).all()
        assert (class_ids[b, positive, 0] == gt_ids[iou[positive].argmax(axis=1)]).all()
        for i in np.where(positive)[0]:
            c = class_ids[b, i, 0]
            # the deltas and mask sit at the ROI's class only; the deltas lead to the matched box
            assert not np.any(np.delete(bboxes[b, i], c, axis=0)) and not np.any(np.delete(masks[b, i], c, axis=-1))
            deltas = bboxes[b, i, c] * np.asarray(config.BBOX_STD_DEV)
            refined = utils.apply_box_deltas(rois[b, i:i + 1].astype(np.float64), deltas[None])
            np.testing.assert_allclose(refined[0], gt_boxes[iou[i].argmax()], atol=1e-3)
            assert masks[b, i, :, :, c].max() > 0.5
        assert not np.any(bboxes[b, ~positive]) and not np.any(masks[b, ~positive])
    with pytest.raises(ValueError, match="detection_targets needs random_rois"):
        next(modellib.data_generator(shapes_dataset, config, detection_targets=True))


def test_train_shapes_notebook_workflow(tmp_path, shapes_dataset):
    """train_shapes.ipynb's cells, Matterport's spelling: train the heads, reload the last checkpoint in
    inference mode, the mAP loop over load_image_gt / mold_image / detect / compute_ap, display_instances."""
    from mrcnn import visualize

    config = TinyModelConfig(TRAIN_ADD_GT_PROPOSALS=True)
    model = modellib.MaskRCNN(mode="training", config=config, model_dir=str(tmp_path))
    model.train(shapes_dataset, shapes_dataset, learning_rate=config.LEARNING_RATE, epochs=1, layers="heads")

    inference_config = TinyModelConfig(GPU_COUNT=1, IMAGES_PER_GPU=1)
    model = modellib.MaskRCNN(mode="inference", config=inference_config, model_dir=str(tmp_path))
    model_path = model.find_last()
    model.load_weights(model_path, by_name=True)
    APs = []
    for image_id in shapes_dataset.image_ids[:3]:
        image, image_meta, gt_class_id, gt_bbox, gt_mask = modellib.load_image_gt(
            shapes_dataset, inference_config, image_id, use_mini_mask=False)
        molded_images = np.expand_dims(modellib.mold_image(image, inference_config), 0)
        results = model.detect([image], verbose=0)
        r = results[0]
        AP, precisions, recalls, overlaps = utils.compute_ap(gt_bbox, gt_class_id, gt_mask, r["rois"],
                                                             r["class_ids"], r["scores"], r["masks"])
        APs.append(AP)
        assert molded_images.shape == (1, 128, 128, 3) and image_meta.shape == (config.IMAGE_META_SIZE,)
        assert gt_mask.shape == (128, 128, len(gt_class_id)) and r["masks"].shape[:2] == (128, 128)
        assert 0.0 <= AP <= 1.0 and overlaps.shape == (len(r["rois"]), len(gt_bbox))
        # Matterport's padded curves: recall from 0 to 1, precision made non-increasing, ending at 0
        assert recalls[0] == 0 and recalls[-1] == 1 and precisions[-1] == 0
        assert (np.diff(precisions) <= 0).all()
    assert np.isfinite(np.mean(APs))
    visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"], shapes_dataset.class_names,
                                r["scores"], figsize=(4, 4))
