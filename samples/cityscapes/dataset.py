"""Cityscapes instance segmentation data: the real folder layout, polygon JSON, official label table.

Layout read (the official one)::

    <root>/leftImg8bit/<subset>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<subset>/<city>/<city>_<seq>_<frame>_gtFine_polygons.json
    <root>/gtFine/<subset>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png   (not needed to train)

Instance masks are rasterized from the polygons exactly as the official converter
(``cityscapesscripts.preparation.json2instanceImg``) draws the instanceIds image: every polygon of the
file, stuff included, in file order with later polygons over earlier ones; deleted objects skipped;
``license plate`` (id -1) never drawn; polygons reaching outside the image clipped. Each mask is the
visible pixels of its object. Group regions (``cargroup``, ``persongroup``...) and, in 8-class mode,
``caravan``/``trailer`` come back with NEGATIVE class ids: crowd regions, neither positives nor negatives
in training (Matterport's convention). Labels come from ``cityscapesscripts.helpers.labels``.
"""

from __future__ import annotations

import glob
import json
import logging
import os

import numpy as np
from cityscapesscripts.helpers.labels import labels as CS_LABELS
from cityscapesscripts.helpers.labels import name2label
from PIL import Image, ImageDraw

from mrcnn import utils

logger = logging.getLogger(__name__)

SOURCE = "cityscapes"
# The 8 classes the official instance benchmark scores, in label-id order
BENCHMARK_CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
# All classes with instances in the label table (adds caravan and trailer, ignored by the benchmark)
INSTANCE_CLASSES = tuple(label.name for label in CS_LABELS if label.hasInstances)


class CityscapesDataError(ValueError):
    """A Cityscapes file that is missing, corrupt, or disagrees with its annotation; names the file."""


def annotation_path(image_path):
    """The gtFine polygon JSON of a leftImg8bit image path."""
    directory, name = os.path.split(image_path)
    subset_dir, city = os.path.split(directory)
    root_img, subset = os.path.split(subset_dir)
    root = os.path.dirname(root_img)
    stem = name[: -len("_leftImg8bit.png")]
    return os.path.join(root, "gtFine", subset, city, f"{stem}_gtFine_polygons.json")


def read_annotation(path):
    """The polygon JSON as a dict, or CityscapesDataError naming the file."""
    try:
        with open(path) as f:
            annotation = json.load(f)
    except FileNotFoundError:
        raise CityscapesDataError(f"missing annotation: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CityscapesDataError(f"corrupt annotation JSON {path}: {error}") from error
    for key in ("imgHeight", "imgWidth", "objects"):
        if key not in annotation:
            raise CityscapesDataError(f"annotation {path} has no {key!r}")
    return annotation


def resolve_label(name, path):
    """``(label tuple, is_group)`` for a polygon label, as the official converter resolves it."""
    is_group = False
    if name not in name2label and name.endswith("group"):
        name, is_group = name[: -len("group")], True
    if name not in name2label:
        raise CityscapesDataError(f"{path}: unknown label {name!r}")
    return name2label[name], is_group


def rasterize_objects(annotation, path):
    """Draw the polygons in file order into an object-index map.

    Returns ``index_map`` int32 ``[H, W]`` (0 = nothing, k = the k-th drawn object, 1-based), the list
    of drawn objects as ``(label tuple, is_group)``, in drawing order, and ``[(object index, reason)]`` of
    objects left out: polygons of a single point (no area; the official converter fails on them).
    A malformed annotation (size, objects, a polygon's points) raises CityscapesDataError naming the file.
    """
    try:
        height, width = int(annotation["imgHeight"]), int(annotation["imgWidth"])
    except (TypeError, ValueError):
        raise CityscapesDataError(f"{path}: imgHeight/imgWidth are not integers") from None
    if height < 1 or width < 1:
        raise CityscapesDataError(f"{path}: image size {width}x{height} in the annotation is empty")
    if not isinstance(annotation["objects"], list):
        raise CityscapesDataError(f"{path}: 'objects' is not a list")
    canvas = Image.new("I", (width, height), 0)
    drawer = ImageDraw.Draw(canvas)
    drawn, left_out = [], []
    for index, obj in enumerate(annotation["objects"]):
        if not isinstance(obj, dict) or "label" not in obj or "polygon" not in obj:
            raise CityscapesDataError(f"{path}: object {index} has no label or polygon")
        if obj.get("deleted"):
            continue
        label, is_group = resolve_label(obj["label"], path)
        if label.id < 0:  # license plate: never drawn by the official converter
            continue
        try:  # as given, like the official converter
            polygon = [(float(point[0]), float(point[1])) for point in obj["polygon"]]
        except (TypeError, ValueError, IndexError):
            raise CityscapesDataError(f"{path}: object {index} ({obj['label']}) has a polygon that is not a list "
                                      f"of [x, y] numbers") from None
        if len(polygon) < 2:
            left_out.append((index, f"object {index} ({obj['label']}): a polygon of {len(polygon)} point(s)"))
            continue
        drawn.append((label, is_group))
        drawer.polygon(polygon, fill=len(drawn))
    return np.asarray(canvas, dtype=np.int32), drawn, left_out


class CityscapesDataset(utils.Dataset):
    """Cityscapes fine annotations as Matterport instances; see the module docstring."""

    def __init__(self, class_map=None, classes=BENCHMARK_CLASSES, skip_bad=False):
        super().__init__(class_map)
        unknown = [c for c in classes if c not in INSTANCE_CLASSES]
        if unknown:
            raise ValueError(f"CityscapesDataset: {unknown} are not Cityscapes instance classes "
                             f"{INSTANCE_CLASSES}")
        self.classes = tuple(classes)
        self.skip_bad = skip_bad
        self.skipped = []  # (path, reason) of images skipped with skip_bad
        self.left_out_objects = {}  # annotation path -> reasons of objects left out (single-point polygons)

    def load_cityscapes(self, dataset_dir, subset):
        """Register the classes and every image of ``<dataset_dir>/leftImg8bit/<subset>/<city>/``."""
        for name in self.classes:
            self.add_class(SOURCE, name2label[name].id, name)
        pattern = os.path.join(dataset_dir, "leftImg8bit", subset, "*", "*_leftImg8bit.png")
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise CityscapesDataError(f"no images match {pattern}; expected the Cityscapes layout "
                                      f"leftImg8bit/{subset}/<city>/<city>_<seq>_<frame>_leftImg8bit.png")
        seen = {}
        for path in paths:
            stem = os.path.basename(path)[: -len("_leftImg8bit.png")]
            if stem in seen:  # the same frame in two city folders: its predictions would overwrite each other
                reason = f"{path} has the same frame name as {seen[stem]}"
                if not self.skip_bad:
                    raise CityscapesDataError(reason + " (one frame name per subset)")
                self.skipped.append((path, reason))
                logger.warning("skipping %s (%d skipped so far): %s", path, len(self.skipped), reason)
                continue
            seen[stem] = path
            self.add_image(SOURCE, image_id=stem, path=path, annotation=annotation_path(path))

    def image_reference(self, image_id):
        return self.image_info[image_id]["path"]

    def load_mask(self, image_id):
        """Masks ``[H, W, N]`` bool of the visible pixels, class ids ``[N]`` int32 (negative: crowd)."""
        info = self.image_info[image_id]
        if info.get("bad"):
            return self._bad(image_id, info["bad"])
        path = info["annotation"]
        try:
            annotation = read_annotation(path)
            index_map, drawn, left_out = rasterize_objects(annotation, path)
        except CityscapesDataError as error:
            return self._bad(image_id, str(error))
        if left_out and path not in self.left_out_objects:
            self.left_out_objects[path] = [reason for _, reason in left_out]
            logger.warning("%s: left out %s", path, "; ".join(self.left_out_objects[path]))
        masks, class_ids = [], []
        for k, (label, is_group) in enumerate(drawn, start=1):
            if not label.hasInstances:
                continue
            if label.name in self.classes:
                class_id = self.map_source_class_id(f"{SOURCE}.{label.id}")
                class_id = -class_id if is_group else class_id
            elif is_group or label.name in INSTANCE_CLASSES:
                class_id = -1  # an instance class outside the chosen set: a crowd region to ignore
            else:
                continue
            mask = index_map == k
            if mask.any():
                masks.append(mask)
                class_ids.append(class_id)
        height, width = index_map.shape
        if not masks:
            return np.zeros((height, width, 0), dtype=bool), np.zeros([0], np.int32)
        return np.stack(masks, axis=-1), np.array(class_ids, dtype=np.int32)

    def load_image(self, image_id):
        info = self.image_info[image_id]
        try:
            image = super().load_image(image_id)
        except utils.ImageLoadError as error:
            return self._bad(image_id, str(error), image=True)
        if "checked" not in info:
            try:
                annotation = read_annotation(info["annotation"])
            except CityscapesDataError as error:
                return self._bad(image_id, str(error), image=True)
            expected = (int(annotation["imgHeight"]), int(annotation["imgWidth"]))
            if image.shape[:2] != expected:
                return self._bad(image_id, f"{info['path']} is {image.shape[1]}x{image.shape[0]} but its "
                                           f"annotation {info['annotation']} says {expected[1]}x{expected[0]}",
                                 image=True)
            info["checked"] = True
        return image

    def _bad(self, image_id, reason, image=False):
        """Raise, or with skip_bad log and count the image and return an empty stand-in."""
        if not self.skip_bad:
            raise CityscapesDataError(reason)
        info = self.image_info[image_id]
        if info.get("bad") is None:
            info["bad"] = reason
            self.skipped.append((info["path"], reason))
            logger.warning("skipping %s (%d skipped so far): %s", info["path"], len(self.skipped), reason)
        if image:
            return np.zeros((64, 64, 3), dtype=np.uint8)
        return np.zeros((64, 64, 0), dtype=bool), np.zeros([0], np.int32)
