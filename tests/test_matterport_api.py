"""Matterport's own spelling of the API its notebooks and samples call, at tiny sizes.

Each test calls one API as Matterport's code does (names, arguments) and checks the return shapes and meaning
Matterport's code expects. Written here from Matterport's documented behaviour, not copied from it.
"""

import logging

import keras
import numpy as np
import pytest

import mrcnn.model as modellib
from mrcnn import utils
from mrcnn.model import log  # every Matterport notebook's first cell
from tests.conftest import TinyModelConfig


@pytest.fixture(scope="module")
def inference(tmp_path_factory):
    keras.utils.set_random_seed(1)  # random weights, the same each run
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
    pillar = model.get_layer("ROI").output
    assert inference.ancestor(pillar, "ROI:0") is pillar and inference.ancestor(pillar, "ROI") is pillar
    # an op inside a layer in Matterport's TF1 graph: said so, not the layer's output under the op's name
    with pytest.raises(ValueError, match="op inside the layer 'ROI'.*run_graph"):
        inference.ancestor(pillar, "ROI/rpn_non_max_suppression:0")
    with pytest.raises(ValueError, match="no layer 'nowhere'.*run_graph"):
        inference.ancestor(None, "nowhere/op:0")


def test_detect_and_run_graph_keep_the_anchors_in_model_anchors(tmp_path, shapes_dataset):
    """Matterport's detect() and run_graph() call get_anchors, which keeps the pixel anchors of the molded size in
    model.anchors; inspect_model.ipynb's RPN-targets cell reads them."""
    for call in ("detect", "run_graph"):
        model = modellib.MaskRCNN("inference", TinyModelConfig(IMAGES_PER_GPU=1), str(tmp_path))
        assert not hasattr(model, "anchors")
        image = shapes_dataset.load_image(0)
        if call == "detect":
            model.detect([image])
        else:
            model.run_graph([image], [("proposals", "ROI")])
        expected = utils.generate_pyramid_anchors(
            model.config.RPN_ANCHOR_SCALES, model.config.RPN_ANCHOR_RATIOS,
            modellib.compute_backbone_shapes(model.config, model.config.IMAGE_SHAPE), model.config.BACKBONE_STRIDES,
            model.config.RPN_ANCHOR_STRIDE)
        np.testing.assert_array_equal(model.anchors, expected)


def test_run_graph_gives_matterports_mask_shape_without_detections(tmp_path, shapes_dataset):
    """With no detection at all, mrcnn_mask still comes back as Matterport's [1, 100, 28, 28, classes]."""
    config = TinyModelConfig(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=1.0)  # nothing reaches it
    model = modellib.MaskRCNN("inference", config, str(tmp_path))
    out = model.run_graph([shapes_dataset.load_image(0)], [
        ("masks", model.keras_model.get_layer("mrcnn_mask").output), ("detections", "mrcnn_detection")])
    assert not out["detections"][0, :, 4].any()
    assert out["masks"].shape == (1, config.DETECTION_MAX_INSTANCES, 28, 28, config.NUM_CLASSES)


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


def test_inspect_data_notebook_workflow(shapes_dataset):
    """inspect_data.ipynb's cells, Matterport's spelling: masks and boxes, resizing, mini masks, anchors per
    level, and the generator's RPN targets and debugging ROIs drawn back onto the image."""
    from mrcnn import visualize

    config, dataset = TinyModelConfig(), shapes_dataset
    image_id = dataset.image_ids[1]
    image = dataset.load_image(image_id)
    mask, class_ids = dataset.load_mask(image_id)
    visualize.display_top_masks(image, mask, class_ids, dataset.class_names)
    bbox = utils.extract_bboxes(mask)
    visualize.display_instances(image, bbox, mask, class_ids, dataset.class_names)
    original_shape = image.shape
    image, window, scale, padding, _ = utils.resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
    mask = utils.resize_mask(mask, scale, padding)
    assert image.shape == (128, 128, 3) and mask.shape[:2] == (128, 128)
    y1, x1, y2, x2 = window
    assert (y2 - y1, x2 - x1) == (round(original_shape[0] * scale), round(original_shape[1] * scale))

    image, image_meta, class_ids, bbox, mask = modellib.load_image_gt(dataset, config, image_id, use_mini_mask=False)
    visualize.display_images([image] + [mask[:, :, i] for i in range(min(mask.shape[-1], 7))])
    mini = utils.minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)
    assert mini.shape == tuple(config.MINI_MASK_SHAPE) + (len(class_ids),)
    expanded = utils.expand_mask(bbox, mini, image.shape)
    for i in range(len(class_ids)):
        iou = (expanded[..., i] & mask[..., i]).sum() / (expanded[..., i] | mask[..., i]).sum()
        assert iou > 0.85  # the round trip through 28x28 keeps the shape

    backbone_shapes = modellib.compute_backbone_shapes(config, config.IMAGE_SHAPE)
    anchors = utils.generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, backbone_shapes,
                                             config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
    anchors_per_cell = len(config.RPN_ANCHOR_RATIOS)
    per_level = [s[0] * s[1] * anchors_per_cell // config.RPN_ANCHOR_STRIDE ** 2 for s in backbone_shapes]
    assert anchors.shape == (sum(per_level), 4)
    first_of_level = np.cumsum([0] + per_level[:-1])
    for level, start in enumerate(first_of_level):  # the first anchors of each level have that level's scale
        heights = anchors[start:start + anchors_per_cell, 2] - anchors[start:start + anchors_per_cell, 0]
        widths = anchors[start:start + anchors_per_cell, 3] - anchors[start:start + anchors_per_cell, 1]
        np.testing.assert_allclose(np.sqrt(heights * widths), config.RPN_ANCHOR_SCALES[level], rtol=1e-6)

    g = modellib.data_generator(dataset, config, shuffle=True, random_rois=2000, batch_size=2,
                                detection_targets=True, seed=1)
    [normalized_images, image_meta, rpn_match, rpn_bbox, gt_class_ids, gt_boxes, gt_masks, rpn_rois, rois], \
        [mrcnn_class_ids, mrcnn_bbox, mrcnn_mask] = next(g)
    assert rpn_match.shape == (2, len(anchors), 1) and rpn_bbox.shape == (2, config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4)
    b = 0
    sample_image = modellib.unmold_image(normalized_images[b], config)
    assert sample_image.dtype == np.uint8 and sample_image.shape == (128, 128, 3)
    positive_anchor_ids = np.where(rpn_match[b] == 1)[0]
    negative_anchor_ids = np.where(rpn_match[b] == -1)[0]
    assert len(positive_anchor_ids) > 0 and len(negative_anchor_ids) > 0
    refined = utils.apply_box_deltas(anchors[positive_anchor_ids],
                                     rpn_bbox[b, :len(positive_anchor_ids)] * config.RPN_BBOX_STD_DEV)
    n = int(np.count_nonzero(gt_class_ids[b]))
    best = utils.compute_overlaps(refined, gt_boxes[b, :n].astype(np.float64)).max(axis=1)
    np.testing.assert_allclose(best, 1.0, atol=1e-4)  # each positive anchor's deltas lead to its ground truth
    visualize.draw_boxes(sample_image, boxes=anchors[positive_anchor_ids], refined_boxes=refined)
    ids = mrcnn_class_ids[b, :, 0]
    bbox_specific = mrcnn_bbox[b, np.arange(mrcnn_bbox.shape[1]), ids, :]  # the notebook's class-aware reading
    refined_rois = utils.apply_box_deltas(rois[b].astype(np.float32), bbox_specific[:, :4] * config.BBOX_STD_DEV)
    mask_specific = mrcnn_mask[b, np.arange(mrcnn_mask.shape[1]), :, :, ids]
    assert mask_specific.shape == (config.TRAIN_ROIS_PER_IMAGE,) + tuple(config.MASK_SHAPE)
    visualize.draw_rois(sample_image, rois[b], refined_rois, mask_specific, mrcnn_class_ids[b], dataset.class_names)
    positive = ids > 0
    best = utils.compute_overlaps(refined_rois[positive], gt_boxes[b, :n].astype(np.float32)).max(axis=1)
    np.testing.assert_allclose(best, 1.0, atol=1e-3)  # the positive ROIs' deltas lead to their ground truth


def test_inspect_model_notebook_workflow(inference, shapes_dataset):
    """inspect_model.ipynb's cells, Matterport's spelling: run_graph over layer output tensors (the RPN
    stage, the proposals, the heads and detections), reading detections and masks as the notebook does."""
    model, config = inference, inference.config
    image = shapes_dataset.load_image(2)
    pillar = model.keras_model.get_layer("ROI").output
    with pytest.raises(ValueError, match="op inside the layer 'ROI'"):  # TF1's NMS op: not a Keras 3 tensor
        model.ancestor(pillar, "ROI/rpn_non_max_suppression:0")
    rpn = model.run_graph([image], [
        ("rpn_class", model.keras_model.get_layer("rpn_class").output),
        ("rpn_bbox", model.keras_model.get_layer("rpn_bbox").output),
        ("proposals", model.ancestor(pillar, "ROI:0")),
    ])
    anchors = model.get_anchors(config.IMAGE_SHAPE)
    assert rpn["rpn_class"].shape == (1, len(anchors), 2) and rpn["rpn_bbox"].shape == (1, len(anchors), 4)
    np.testing.assert_allclose(rpn["rpn_class"].sum(axis=-1), 1.0, atol=1e-5)  # softmax over bg / fg
    proposals = rpn["proposals"][0]
    assert proposals.shape == (config.POST_NMS_ROIS_INFERENCE, 4)
    assert (proposals >= 0).all() and (proposals <= 1).all()  # normalized, clipped to the image

    mrcnn = model.run_graph([image], [
        ("proposals", model.keras_model.get_layer("ROI").output),
        ("probs", model.keras_model.get_layer("mrcnn_class").output),
        ("deltas", model.keras_model.get_layer("mrcnn_bbox").output),
        ("masks", model.keras_model.get_layer("mrcnn_mask").output),
        ("detections", model.keras_model.get_layer("mrcnn_detection").output),
        ("roi_align_classifier", model.keras_model.get_layer("roi_align_classifier").output),
    ])
    rois, classes = config.POST_NMS_ROIS_INFERENCE, config.NUM_CLASSES
    assert mrcnn["probs"].shape == (1, rois, classes) and mrcnn["deltas"].shape == (1, rois, classes, 4)
    assert mrcnn["masks"].shape == (1, config.DETECTION_MAX_INSTANCES, 28, 28, classes)
    assert mrcnn["roi_align_classifier"].shape[:4] == (1, rois, config.POOL_SIZE, config.POOL_SIZE)
    np.testing.assert_array_equal(mrcnn["proposals"], rpn["proposals"])
    det_class_ids = mrcnn["detections"][0, :, 4].astype(np.int32)
    det_count = np.where(det_class_ids == 0)[0][0] if (det_class_ids == 0).any() else len(det_class_ids)
    det_class_ids = det_class_ids[:det_count]
    detections = mrcnn["detections"][0, :det_count]
    assert det_count > 0  # DETECTION_MIN_CONFIDENCE = 0: random weights still detect
    # the notebook's per-detection reading: the class probability of its ROI is its score
    captions = [f"{shapes_dataset.class_names[c]} {s:.3f}" for c, s in zip(det_class_ids, detections[:, 5])]
    assert len(captions) == det_count
    det_mask_specific = np.array([mrcnn["masks"][0, i, :, :, c] for i, c in enumerate(det_class_ids)])
    assert det_mask_specific.shape == (det_count, 28, 28)
    r = model.detect([image])[0]  # the same detections, less those whose box has no area in image pixels
    assert len(r["class_ids"]) <= det_count and np.isin(r["scores"], detections[:, 5]).all()


def test_inspect_weights_notebook_workflow(inference):
    """inspect_weights.ipynb: display_weight_stats(model) lists every weight; get_trainable_layers."""
    from mrcnn import visualize

    html = visualize.display_weight_stats(inference)
    weights = [w for layer in inference.keras_model.layers for w in layer.weights]
    assert html.count("<tr>") == 1 + len(weights) and "mrcnn_mask" in html
    layers = inference.get_trainable_layers()
    assert {w.path for layer in layers for w in layer.weights} <= {w.path for w in weights}
