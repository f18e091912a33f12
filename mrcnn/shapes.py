"""A synthetic shapes data set (Matterport's ``train_shapes`` toy problem), made in memory.

Squares, circles and triangles of random colour, size and position on a random background colour.
Later shapes are drawn over earlier ones, and each mask holds only the visible pixels of its shape.
Used by the tests, the benchmarks and the learning check; deterministic for a given seed.
"""

from __future__ import annotations

import cv2
import numpy as np

from mrcnn.boxes import non_max_suppression
from mrcnn.dataset import Dataset

SHAPES = ("square", "circle", "triangle")


def draw_shape(image, shape, dims, color):
    """Draw one filled shape into ``image`` (modified in place) and return it.

    dims: ``(center_y, center_x, size)``; size is half the square's side, the circle's radius and the
    triangle's circumradius-like extent, as Matterport.
    """
    y, x, s = dims
    color = tuple(int(c) for c in color)
    if shape == "square":
        cv2.rectangle(image, (x - s, y - s), (x + s, y + s), color, -1)
    elif shape == "circle":
        cv2.circle(image, (x, y), s, color, -1)
    elif shape == "triangle":
        points = np.array([[(x, y - s), (x - s / np.sin(np.radians(60)), y + s),
                            (x + s / np.sin(np.radians(60)), y + s)]], dtype=np.int32)
        cv2.fillPoly(image, points, color)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return image


class ShapesDataset(Dataset):
    """Random images of shapes, generated on the fly from per-image specs."""

    def load_shapes(self, count, height, width, seed=0, max_shapes=4, min_shapes=1, empty_fraction=0.0):
        """Register ``count`` images of ``height`` x ``width`` (at most 255 shapes each).

        As Matterport's ``random_image``: each image draws ``min_shapes``..``max_shapes`` shapes, drops
        those whose box overlaps an earlier one by IoU > 0.3, and ``empty_fraction`` of the images hold
        none. Sizes and margins scale with the image (Matterport's values at 128 px).
        """
        if max_shapes > 255:
            raise ValueError(f"load_shapes: at most 255 shapes per image, got max_shapes={max_shapes}")
        for i, name in enumerate(SHAPES, start=1):
            self.add_class("shapes", i, name)
        rng = np.random.default_rng(seed)
        for image_id in range(count):
            background = rng.integers(0, 256, size=3)
            if rng.random() < empty_fraction:
                specs = []
            else:
                specs = [self._random_shape(rng, height, width)
                         for _ in range(rng.integers(min_shapes, max_shapes + 1))]
                boxes = np.array([[y - s, x - s, y + s, x + s] for _, _, (y, x, s) in specs])
                keep = non_max_suppression(boxes, np.arange(len(specs)), 0.3)
                specs = [specs[i] for i in sorted(keep)]
            self.add_image("shapes", image_id=image_id, path=None, width=width, height=height,
                           bg_color=background, shapes=specs)

    @staticmethod
    def _random_shape(rng, height, width):
        """Matterport's random_shape, scaled: margin 20 px and size 20..side/4 at a 128-px side."""
        shape = SHAPES[rng.integers(len(SHAPES))]
        color = rng.integers(0, 256, size=3)
        side = min(height, width)
        buffer = max(2, round(20 * side / 128))
        size = int(rng.integers(buffer, max(buffer, side // 4) + 1))
        y = int(rng.integers(buffer, height - buffer))
        x = int(rng.integers(buffer, width - buffer))
        return shape, color, (y, x, size)

    def load_image(self, image_id):
        info = self.image_info[image_id]
        image = np.empty((info["height"], info["width"], 3), dtype=np.uint8)
        image[:] = info["bg_color"]
        for shape, color, dims in info["shapes"]:
            draw_shape(image, shape, dims, color)
        return image

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        shapes = info["shapes"]
        # Draw instance numbers into one label map, later shapes over earlier ones, so each mask
        # holds only the visible pixels of its shape.
        labels = np.zeros((info["height"], info["width"]), dtype=np.uint8)
        for i, (shape, _, dims) in enumerate(shapes, start=1):
            draw_shape(labels, shape, dims, (i,))
        mask = labels[:, :, None] == np.arange(1, len(shapes) + 1, dtype=np.uint8)
        class_ids = np.array([self.class_names.index(s[0]) for s in shapes], dtype=np.int32)
        return mask, class_ids

    def image_reference(self, image_id):
        return f"shapes image {image_id}: {[s[0] for s in self.image_info[image_id]['shapes']]}"
