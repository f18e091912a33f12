"""The ``Dataset`` base class (Matterport's ``utils.Dataset``).

Subclass it, register classes and images in a ``load_*`` method, override ``load_mask`` (and
``load_image`` for images that are not files), then call ``prepare()``::

    class BalloonDataset(utils.Dataset):
        def load_balloon(self, dataset_dir, subset):
            self.add_class("balloon", 1, "balloon")
            for name in ...:
                self.add_image("balloon", image_id=name, path=..., polygons=...)

        def load_mask(self, image_id):
            ...
            return masks, class_ids   # [H, W, N] bool, [N] int32

Class ids inside the data set are contiguous integers (0 is background); each source keeps its own
ids, mapped with ``map_source_class_id("coco.12")`` / ``get_source_class_id(id, "coco")``.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)


class ImageLoadError(OSError):
    """An image file that is missing, unreadable or corrupt; the message names the path."""


def read_image_rgb(path):
    """Read an image file as uint8 RGB ``[H, W, 3]``.

    Grayscale (8- or 16-bit), palette, gray+alpha, RGBA and CMYK files are converted: alpha is
    dropped (as Matterport) and 16-bit values are scaled to 8 bits. Raises :class:`ImageLoadError`
    naming ``path`` when the file is missing or cannot be decoded.
    """
    if not os.path.isfile(path):
        raise ImageLoadError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.float64)
                peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
                gray = np.clip(np.rint(array * (255.0 / peak)), 0, 255).astype(np.uint8)
                return np.repeat(gray[:, :, None], 3, axis=2)
            if image.mode == "F":
                raise ImageLoadError(f"{path}: floating-point images are not supported; convert to 8-bit RGB")
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ImageLoadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"cannot read image {path}: {error}") from error


class Dataset:
    """Base class for data sets: a registry of classes and images with uniform ids."""

    def __init__(self, class_map=None):
        self._image_ids = []
        self.image_info = []
        # Background is always the first class
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids = {}

    def add_class(self, source, class_id, class_name):
        """Register class ``class_id`` of ``source`` (e.g. ``"coco", 1, "person"``); repeats are ignored."""
        if "." in source:
            raise ValueError(f"add_class: source names cannot contain a dot, got {source!r}")
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source, image_id, path, **kwargs):
        """Register an image; extra keyword arguments are kept in its ``image_info`` dict."""
        image_info = {"id": image_id, "source": source, "path": path}
        image_info.update(kwargs)
        self.image_info.append(image_info)

    def image_reference(self, image_id):
        """A link or description of the image for debugging; override in subclasses."""
        return ""

    def prepare(self, class_map=None):
        """Build the id tables; call after adding classes and images and before use."""

        def clean_name(name):
            """First part of a comma-separated object name."""
            return ",".join(name.split(",")[:1])

        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [clean_name(c["name"]) for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)

        # Mapping from source class and image ids to internal ids
        self.class_from_source_map = {
            f"{info['source']}.{info['id']}": class_id
            for info, class_id in zip(self.class_info, self.class_ids)
        }
        self.image_from_source_map = {
            f"{info['source']}.{info['id']}": image_id
            for info, image_id in zip(self.image_info, self.image_ids)
        }
        # The same source image id twice: both images stay, image_from_source_map finds the last.
        counts = {}
        for info in self.image_info:
            key = f"{info['source']}.{info['id']}"
            counts.setdefault(key, []).append(info.get("path"))
        self.duplicate_image_ids = {key: paths for key, paths in counts.items() if len(paths) > 1}
        if self.duplicate_image_ids:
            key, paths = next(iter(self.duplicate_image_ids.items()))
            logger.warning("%d image ids were added more than once (first: %s, paths %s); "
                           "image_from_source_map gives the last of each", len(self.duplicate_image_ids), key,
                           ", ".join(str(p) for p in paths))

        # Sources in registration order; background (class 0) belongs to every source
        self.sources = list(dict.fromkeys(info["source"] for info in self.class_info))
        self.source_class_ids = {
            source: [i for i, info in enumerate(self.class_info) if i == 0 or info["source"] == source]
            for source in self.sources
        }

    def map_source_class_id(self, source_class_id):
        """Internal class id of ``"source.class_id"``, e.g. ``map_source_class_id("coco.12")``."""
        try:
            return self.class_from_source_map[source_class_id]
        except KeyError:
            raise KeyError(f"unknown source class {source_class_id!r}; known: "
                           f"{sorted(self.class_from_source_map)}") from None

    def get_source_class_id(self, class_id, source):
        """The id that ``source`` uses for internal class ``class_id``."""
        info = self.class_info[class_id]
        if info["source"] != source:
            raise ValueError(f"class {class_id} ({info['name']!r}) belongs to source "
                             f"{info['source']!r}, not {source!r}")
        return info["id"]

    @property
    def image_ids(self):
        return self._image_ids

    def source_image_link(self, image_id):
        """Path or URL of the image in its source data set."""
        return self.image_info[image_id]["path"]

    def load_image(self, image_id):
        """The image as uint8 RGB ``[H, W, 3]``; see :func:`read_image_rgb` for conversions and errors."""
        return read_image_rgb(self.image_info[image_id]["path"])

    def load_mask(self, image_id):
        """Instance masks ``[H, W, N]`` bool and class ids ``[N]`` int32. Override in subclasses.

        Negative class ids mark crowd regions (groups): they are excluded from training targets.
        The default returns no instances and logs a warning.
        """
        logger.warning("You are using the default load_mask(), maybe you need to define your own one.")
        return np.empty([0, 0, 0], dtype=bool), np.empty([0], np.int32)
