"""mrcnn.visualize under Agg: files are written and the drawn pixels are where the masks and boxes are."""

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from mrcnn import visualize  # noqa: E402
from mrcnn.evaluation.ap import compute_ap  # noqa: E402

NAMES = ["BG", "car", "person"]


def _scene():
    image = np.full((120, 160, 3), 128, np.uint8)
    masks = np.zeros((120, 160, 2), bool)
    masks[20:60, 20:70, 0] = True
    masks[70:110, 100:140, 1] = True
    boxes = np.array([[20, 20, 60, 70], [70, 100, 110, 140]])
    return image, masks, boxes, np.array([1, 2])


def _read(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_display_instances_colours_the_masks_and_nothing_else(tmp_path):
    image, masks, boxes, class_ids = _scene()
    path = tmp_path / "instances.png"
    colors = [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]
    visualize.display_instances(image, boxes, masks, class_ids, NAMES, np.array([0.9, 0.8]), colors=colors,
                                figsize=(4, 3), show_bbox=False, path=str(path))
    picture = _read(path)
    red = (picture[:, :, 0] - picture[:, :, 2]) > 60
    blue = (picture[:, :, 2] - picture[:, :, 0]) > 60
    # The figure rescales the image: compare where, in relative terms, the colours fall.
    ys, xs = np.nonzero(red)
    assert red.sum() > 100 and blue.sum() > 100
    h, w = picture.shape[:2]
    assert ys.mean() / h < 0.5 and xs.mean() / w < 0.5          # the car: upper left
    ys, xs = np.nonzero(blue)
    assert ys.mean() / h > 0.5 and xs.mean() / w > 0.5          # the person: lower right


def test_draw_box_and_apply_mask_pixels():
    image = np.zeros((20, 20, 3), np.uint8)
    visualize.draw_box(image, (2, 3, 10, 12), (255, 0, 0))
    assert (image[2, 3:12] == [255, 0, 0]).all() and (image[5, 3] == [255, 0, 0]).all()
    assert (image[6, 6] == 0).all()
    mask = np.zeros((20, 20), bool)
    mask[5:8, 5:8] = True
    out = visualize.apply_mask(np.full((20, 20, 3), 100, np.uint8), mask, (1.0, 0.0, 0.0), alpha=0.5)
    np.testing.assert_array_equal(out[6, 6], [177, 50, 50])
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])


def test_every_matterport_figure_writes_a_png(tmp_path):
    image, masks, boxes, class_ids = _scene()
    scores = np.array([0.9, 0.6])
    files = {
        "images": lambda p: visualize.display_images([image, image], titles=["a", "b"], path=p),
        "differences": lambda p: visualize.display_differences(
            image, boxes, class_ids, masks, boxes + 2, class_ids, scores, masks, NAMES, path=p),
        "top_masks": lambda p: visualize.display_top_masks(image, masks, class_ids, NAMES, path=p),
        "rois": lambda p: visualize.draw_rois(
            image, boxes, boxes + 3, np.random.default_rng(0).random((2, 28, 28, 3)), class_ids, NAMES, path=p),
        "boxes": lambda p: visualize.draw_boxes(image, boxes=boxes, refined_boxes=boxes + 4, masks=masks,
                                                captions=["x", "y"], title="t", path=p),
    }
    ap, precisions, recalls, overlaps = compute_ap(boxes, class_ids, masks, boxes, class_ids, scores, masks)
    files["pr"] = lambda p: visualize.plot_precision_recall(ap, precisions, recalls, path=p)
    files["overlaps"] = lambda p: visualize.plot_overlaps(class_ids, class_ids, scores, overlaps, NAMES, path=p)
    for name, draw in files.items():
        path = tmp_path / f"{name}.png"
        draw(str(path))
        assert path.is_file() and Image.open(path).size[0] > 100, name
    html = visualize.display_table([["a", "b"], [1, 2]])
    assert html == "<table><tr><td>a</td><td>b</td></tr><tr><td>1</td><td>2</td></tr></table>"


def test_training_curves_and_ap_bars(tmp_path):
    names = ["loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"]
    header = ["epoch"] + names + ["val_" + n for n in names]
    rows = [[str(e)] + [str(3.0 / (e + 1))] * (len(header) - 1) for e in range(3)]
    (tmp_path / "training_log.csv").write_text("\n".join(",".join(r) for r in [header] + rows) + "\n")
    visualize.plot_training_curves(str(tmp_path), path=str(tmp_path / "curves.png"))
    assert Image.open(tmp_path / "curves.png").size[0] > 500
    with pytest.raises(FileNotFoundError, match="training_log.csv"):
        visualize.plot_training_curves(str(tmp_path / "nowhere"), path=str(tmp_path / "x.png"))

    evaluation = {"AP": 0.5, "AP50": 0.75, "classes": {"car": {"AP": 1.0, "AP50": 1.0},
                                                       "person": {"AP": 0.0, "AP50": 0.5}}}
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    visualize.plot_ap_per_class(str(tmp_path / "evaluation.json"), path=str(tmp_path / "ap.png"))
    picture = _read(tmp_path / "ap.png")
    # matplotlib's first two default colours (blue AP, orange AP50) are both drawn.
    blue = (np.abs(picture - [31, 119, 180]).sum(-1) < 30).sum()
    orange = (np.abs(picture - [255, 127, 14]).sum(-1) < 30).sum()
    assert blue > 200 and orange > 200
