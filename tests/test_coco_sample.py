"""samples/coco/coco.py, Matterport's COCO sample, on a tiny COCO-format set written here.

References no one here wrote: pycocotools' own ``COCO.annToMask`` for the masks, ``COCOeval`` for AP.
"""

import io
import json
import os
import sys
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from samples.coco import coco

HEIGHT, WIDTH = 96, 128
CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"},
              {"id": 3, "name": "car", "supercategory": "vehicle"},
              {"id": 7, "name": "train", "supercategory": "vehicle"}]
# A tiny model the CLI builds from --set (resnet50 at a quarter of its width, 128 px images).
TINY = ["NUM_CLASSES=4", "IMAGE_MIN_DIM=128", "IMAGE_MAX_DIM=128", "BACKBONE='resnet50'", "RESNET_WIDTH=16",
        "TOP_DOWN_PYRAMID_SIZE=64", "MASK_HEAD_SIZE=32", "FPN_CLASSIF_FC_LAYERS_SIZE=128",
        "RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128)", "POST_NMS_ROIS_TRAINING=100", "POST_NMS_ROIS_INFERENCE=50",
        "TRAIN_ROIS_PER_IMAGE=32", "MAX_GT_INSTANCES=10", "MINI_MASK_SHAPE=(28, 28)", "STEPS_PER_EPOCH=2",
        "VALIDATION_STEPS=1", "IMAGES_PER_GPU=1", "DETECTION_MAX_INSTANCES=20"]


def _polygon_ellipse(cy, cx, ry, rx, points=24):
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1).ravel().round(1).tolist()


def _image_annotations(rng, image_id, first_id):
    """Three or four objects: polygon ellipses, a two-part polygon, and on even images a crowd region as
    uncompressed RLE and an object as compressed RLE."""
    anns, next_id = [], first_id
    for k in range(2):
        cy, cx = rng.uniform(25, 70), rng.uniform(25, 100)
        anns.append({"category_id": [1, 3][k], "segmentation": [_polygon_ellipse(cy, cx, rng.uniform(8, 18),
                                                                                  rng.uniform(8, 20))],
                     "iscrowd": 0})
    anns.append({"category_id": 7, "iscrowd": 0, "segmentation": [
        [5, 5, 25, 5, 25, 20, 5, 20], [100, 75, 120, 75, 120, 90, 100, 90]]})  # two parts, one object
    if image_id % 2 == 0:
        crowd = np.zeros((HEIGHT, WIDTH), np.uint8)
        crowd[60:90, 40:80] = 1
        counts, values, pos = [], crowd.ravel(order="F"), 0
        while pos < values.size:  # uncompressed RLE: run lengths starting with zeros, column-major
            value = len(counts) % 2
            run = 0
            while pos < values.size and values[pos] == value:
                run, pos = run + 1, pos + 1
            counts.append(run)
        anns.append({"category_id": 1, "iscrowd": 1, "segmentation": {"size": [HEIGHT, WIDTH], "counts": counts}})
        solid = np.zeros((HEIGHT, WIDTH), np.uint8, order="F")
        solid[10:40, 60:90] = 1
        rle = mask_utils.encode(solid)
        anns.append({"category_id": 3, "iscrowd": 0,
                     "segmentation": {"size": [HEIGHT, WIDTH], "counts": rle["counts"].decode("ascii")}})
    for ann in anns:
        ann.update(id=next_id, image_id=image_id)
        rle = _rle(ann)
        ann["area"] = float(mask_utils.area(rle))
        ann["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
        next_id += 1
    return anns


def _rle(ann):
    """The annotation's mask as a compressed RLE, with pycocotools (the test's own reference)."""
    segm = ann["segmentation"]
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, HEIGHT, WIDTH))
    if isinstance(segm["counts"], list):
        return mask_utils.frPyObjects(segm, HEIGHT, WIDTH)
    return {"size": segm["size"], "counts": segm["counts"].encode("ascii")}


def write_coco(root, splits):
    """``splits``: {annotation subset: (image folder, [image ids])}; writes JPEGs and instances_*.json."""
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for subset, (folder, image_ids) in splits.items():
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        images, annotations = [], []
        for image_id in image_ids:
            name = f"COCO_{folder}_{image_id:012d}.jpg"
            anns = _image_annotations(rng, image_id, first_id=1000 * image_id)
            picture = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
            for ann, color in zip(anns, [(220, 60, 60), (60, 220, 60), (60, 60, 220), (200, 200, 40), (40, 200, 200)]):
                picture[mask_utils.decode(_rle(ann)).astype(bool)] = color
            Image.fromarray(picture).save(os.path.join(root, folder, name), quality=95)
            images.append({"id": image_id, "file_name": name, "height": HEIGHT, "width": WIDTH})
            annotations.extend(anns)
        with open(os.path.join(root, "annotations", f"instances_{subset}.json"), "w") as f:
            json.dump({"images": images, "annotations": annotations, "categories": CATEGORIES}, f)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("coco"))
    write_coco(root, {"train2014": ("train2014", [1, 2, 3, 4]), "valminusminival2014": ("val2014", [5, 6]),
                      "minival2014": ("val2014", [7, 8])})
    return root


def test_load_coco_classes_images_and_minival_folder(coco_root):
    dataset = coco.CocoDataset()
    returned = dataset.load_coco(coco_root, "minival", year="2014", return_coco=True)
    dataset.prepare()
    assert isinstance(returned, COCO)
    assert dataset.class_names == ["BG", "person", "car", "train"]
    assert [info["id"] for info in dataset.class_info] == [0, 1, 3, 7]  # COCO's own (sparse) category ids
    assert sorted(info["id"] for info in dataset.image_info) == [7, 8]
    assert all(os.sep + "val2014" + os.sep in info["path"] for info in dataset.image_info)
    assert dataset.image_reference(0) == f"http://cocodataset.org/#explore?id={dataset.image_info[0]['id']}"
    assert dataset.load_image(0).shape == (HEIGHT, WIDTH, 3)

    cars = coco.CocoDataset()
    cars.load_coco(coco_root, "train", year="2014", class_ids=[3])
    cars.prepare()
    assert cars.class_names == ["BG", "car"] and len(cars.image_ids) == 4
    for image_id in cars.image_ids:
        assert {a["category_id"] for a in cars.image_info[image_id]["annotations"]} == {3}
        _, class_ids = cars.load_mask(image_id)
        assert set(class_ids.tolist()) == {1}

    with pytest.raises(FileNotFoundError, match="instances_val2017.json"):
        coco.CocoDataset().load_coco(coco_root, "val", year="2017")


def test_load_mask_equals_pycocotools_ann_to_mask(coco_root):
    dataset = coco.CocoDataset()
    reference = dataset.load_coco(coco_root, "train", year="2014", return_coco=True)
    dataset.prepare()
    crowds = 0
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        anns = dataset.image_info[image_id]["annotations"]
        assert masks.dtype == bool and class_ids.dtype == np.int32 and masks.shape == (HEIGHT, WIDTH, len(anns))
        for i, ann in enumerate(anns):
            np.testing.assert_array_equal(masks[:, :, i], reference.annToMask(ann).astype(bool))
            internal = dataset.map_source_class_id(f"coco.{ann['category_id']}")
            assert class_ids[i] == (-internal if ann["iscrowd"] else internal)
            crowds += ann["iscrowd"]
    assert crowds == 2  # images 2 and 4: negative ids, left out of training targets


def test_build_coco_results_round_trips_boxes_classes_and_masks(coco_root):
    dataset = coco.CocoDataset()
    dataset.load_coco(coco_root, "minival", year="2014")
    dataset.prepare()
    masks, class_ids = dataset.load_mask(0)
    from mrcnn.utils import extract_bboxes

    rois = extract_bboxes(masks)
    scores = np.linspace(0.9, 0.5, len(class_ids))
    results = coco.build_coco_results(dataset, [dataset.image_info[0]["id"]], rois, np.abs(class_ids), scores,
                                      masks.astype(np.uint8))
    assert len(results) == len(class_ids)
    for i, r in enumerate(results):
        y1, x1, y2, x2 = rois[i]
        assert r["image_id"] == dataset.image_info[0]["id"] and r["bbox"] == [x1, y1, x2 - x1, y2 - y1]
        assert r["category_id"] == dataset.image_info[0]["annotations"][i]["category_id"]
        assert r["score"] == pytest.approx(scores[i])
        np.testing.assert_array_equal(mask_utils.decode(r["segmentation"]).astype(bool), masks[:, :, i])
    assert coco.build_coco_results(dataset, [1], None, None, None, None) == []


class _GroundTruthModel:
    """Detects exactly the non-crowd ground truth: COCO AP must then be 1."""

    def __init__(self, dataset, empty=False):
        self.dataset, self.empty, self.paths = dataset, empty, {}
        for image_id in dataset.image_ids:
            self.paths[dataset.image_info[image_id]["path"]] = image_id

    def detect(self, images, verbose=0):
        from mrcnn.utils import extract_bboxes

        image_id = next(i for i in self.dataset.image_ids
                        if np.array_equal(self.dataset.load_image(i), images[0]))
        masks, class_ids = self.dataset.load_mask(image_id)
        keep = class_ids > 0
        if self.empty:
            keep[:] = False
        masks = masks[:, :, keep]
        return [{"rois": extract_bboxes(masks), "class_ids": class_ids[keep], "scores": np.ones(keep.sum()),
                 "masks": masks}]


@pytest.mark.parametrize("eval_type", ["bbox", "segm"])
def test_evaluate_coco_scores_ground_truth_as_ap_one(coco_root, eval_type, capsys):
    dataset = coco.CocoDataset()
    gt = dataset.load_coco(coco_root, "train", year="2014", return_coco=True)
    dataset.prepare()
    evaluation = coco.evaluate_coco(_GroundTruthModel(dataset), dataset, gt, eval_type, limit=3)
    assert evaluation.params.imgIds == [dataset.image_info[i]["id"] for i in dataset.image_ids[:3]]
    assert evaluation.stats[0] == pytest.approx(1.0) and evaluation.stats[1] == pytest.approx(1.0)
    assert "Average Precision" in capsys.readouterr().out
    nothing = coco.evaluate_coco(_GroundTruthModel(dataset, empty=True), dataset, gt, eval_type, limit=2)
    assert nothing.stats[0] == 0 and "No detections on 2 images" in capsys.readouterr().out


def _refuse_network(*args, **kwargs):
    raise AssertionError("tests never touch the network")


def test_auto_download_offline_says_what_to_fetch_and_where(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(coco.CocoDownloadError) as error:
        coco.CocoDataset().load_coco(str(tmp_path), "minival", year="2014", auto_download=True)
    message = str(error.value)
    assert "http://images.cocodataset.org/zips/val2014.zip" in message
    assert str(tmp_path) in message and os.path.join(str(tmp_path), "val2014") in message
    assert "name resolution" in message
    assert not [p for p in os.listdir(tmp_path) if p.endswith((".zip", ".part"))]  # no partial file left


def test_auto_download_unzips_and_skips_what_is_there(tmp_path, coco_root, monkeypatch):
    archives = {}
    for url_part, members in (("val2014.zip", {f"val2014/{n}": os.path.join(coco_root, "val2014", n)
                                               for n in os.listdir(os.path.join(coco_root, "val2014"))}),
                              ("instances_minival2014.json.zip", {
                                  "instances_minival2014.json": os.path.join(coco_root, "annotations",
                                                                             "instances_minival2014.json")})):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, path in members.items():
                archive.write(path, name)
        archives[url_part] = buffer.getvalue()
    fetched = []

    def serve(url, timeout=None):
        fetched.append(url)
        key = next(k for k in archives if k in url)
        return io.BytesIO(archives[key])

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    dataset = coco.CocoDataset()
    dataset.load_coco(str(tmp_path), "minival", year="2014", auto_download=True)
    dataset.prepare()
    assert len(fetched) == 2 and len(dataset.image_ids) == 2 and dataset.load_image(0).shape == (HEIGHT, WIDTH, 3)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".zip")]
    monkeypatch.setattr(urllib.request, "urlopen", _refuse_network)
    coco.CocoDataset().load_coco(str(tmp_path), "minival", year="2014", auto_download=True)  # all there


def test_command_line_trains_and_evaluates(coco_root, tmp_path, capsys, monkeypatch):
    logs = str(tmp_path / "logs")
    settings = [arg for item in TINY for arg in ("--set", item)]
    assert coco.main(["train", f"--dataset={coco_root}", "--model=none", f"--logs={logs}",
                      "--schedule=heads:1,all:2"] + settings) == 0
    out = capsys.readouterr().out
    assert "Training 'heads' until epoch 1" in out and "Training 'all' until epoch 2" in out
    run = [d for d in os.listdir(logs) if d.startswith("coco")]
    assert len(run) == 1
    checkpoints = sorted(p for p in os.listdir(os.path.join(logs, run[0])) if p.endswith(".h5"))
    assert checkpoints == ["mask_rcnn_coco_0001.h5", "mask_rcnn_coco_0002.h5"]

    assert coco.main(["evaluate", f"--dataset={coco_root}", "--model=last", f"--logs={logs}", "--limit=2",
                      "--eval-type=segm"] + settings) == 0
    out = capsys.readouterr().out
    assert "mask_rcnn_coco_0002.h5" in out and "Running COCO evaluation on 2 images" in out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all" in out

    # --model=coco with no weights file and no network: exit 2, one message saying what to do
    monkeypatch.setenv("MRCNN_COCO_WEIGHTS", str(tmp_path / "absent" / "mask_rcnn_coco.h5"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(
        urllib.error.URLError("offline")))
    assert coco.main(["evaluate", f"--dataset={coco_root}", "--model=coco", f"--logs={logs}"] + settings) == 2
    err = capsys.readouterr().err
    assert "--model=coco needs Matterport's COCO weights" in err and "--model=/path/to/mask_rcnn_coco.h5" in err
    assert coco.main(["train", f"--dataset={coco_root}", "--model=none", "--year=2015"]) == 2
    assert "--year=2015: expected 2014 or 2017" in capsys.readouterr().err


def test_demo_notebook_imports_coco_as_matterport_does(tmp_path, monkeypatch):
    """Matterport's demo.ipynb: ``sys.path.append(.../samples/coco); import coco``, an InferenceConfig
    subclass, load_weights(COCO_MODEL_PATH, by_name=True), detect, display_instances."""
    import skimage.io

    from mrcnn import model as modellib
    from mrcnn import visualize
    from mrcnn.weights import save_weights

    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(coco.__file__)))
    monkeypatch.delitem(sys.modules, "coco", raising=False)
    import coco as demo_coco  # noqa: F401  (the notebook's import)

    class InferenceConfig(demo_coco.CocoConfig):
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        # tiny, for the test; the notebook keeps COCO's sizes
        IMAGE_MIN_DIM = IMAGE_MAX_DIM = 128
        BACKBONE = "resnet50"
        RESNET_WIDTH = 16
        TOP_DOWN_PYRAMID_SIZE = 64
        MASK_HEAD_SIZE = 32
        FPN_CLASSIF_FC_LAYERS_SIZE = 128
        POST_NMS_ROIS_INFERENCE = 50
        DETECTION_MIN_CONFIDENCE = 0.0

    config = InferenceConfig()
    assert config.NUM_CLASSES == 81 and config.BATCH_SIZE == 1
    model = modellib.MaskRCNN(mode="inference", model_dir=str(tmp_path), config=config)
    weights = str(tmp_path / "mask_rcnn_coco.h5")  # stands in for Matterport's file (same layout)
    save_weights(model.keras_model, weights)
    model.load_weights(weights, by_name=True)
    image_path = str(tmp_path / "street.jpg")
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (120, 160, 3), np.uint8)).save(image_path)
    image = skimage.io.imread(image_path)
    results = model.detect([image], verbose=1)
    r = results[0]
    assert r["masks"].shape[:2] == image.shape[:2] and r["rois"].shape[1] == 4
    assert r["class_ids"].max(initial=0) <= 80
    class_names = ["BG"] + [f"class {i}" for i in range(1, 81)]
    visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"], class_names, r["scores"])

