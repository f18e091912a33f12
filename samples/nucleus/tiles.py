"""The nucleus sample's default data: real, human-annotated nuclei in the 2018 Data Science Bowl's layout.

stardist's wheel (BSD-3) ships one DSB2018 fluorescence image with its labels, ``stardist/data/images/img2d.tif``
(512x512, uint16 values 0..235) and ``mask2d.tif`` (125 labelled nuclei). :func:`stardist_tiles` cuts them into
a 4x4 grid of 128x128 tiles and writes each as a DSB2018 image folder::

    <root>/stage1_train/<tile id>/images/<tile id>.png     RGBA, the gray value in R, G and B, alpha 255
    <root>/stage1_train/<tile id>/masks/<n>.png            one 0/255 PNG per nucleus part in the tile

so the sample's one loader reads real DSB2018 and this. Each connected part of a nucleus inside a tile is one
mask; parts under MIN_PART_PIXELS (slivers a tile border cuts off a nucleus outside it) are left out and
counted in ``<root>/tiles.json``. The last row of tiles (:data:`VAL_TILE_IDS`) is the held-out ``val`` subset,
never trained on. Only the files are read: stardist itself (which needs csbdeep and TensorFlow pins) is not
imported, so ``pip install --no-deps stardist`` is enough.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile

import numpy as np
from PIL import Image
from scipy import ndimage

GRID = 4
TILE = 128
MIN_PART_PIXELS = 16
TILES_VERSION = 1  # bump when what is written changes
TILE_IDS = [f"stardist_r{row}_c{col}" for row in range(GRID) for col in range(GRID)]
VAL_TILE_IDS = [f"stardist_r{GRID - 1}_c{col}" for col in range(GRID)]


class StardistMissing(RuntimeError):
    """stardist's data files are not installed; the message says how to install them."""


def stardist_files():
    """Paths of stardist's ``img2d.tif`` and ``mask2d.tif``, or StardistMissing saying how to get them."""
    spec = importlib.util.find_spec("stardist")
    folder = os.path.join(os.path.dirname(spec.origin), "data", "images") if spec and spec.origin else None
    paths = [os.path.join(folder, name) for name in ("img2d.tif", "mask2d.tif")] if folder else []
    if not paths or not all(os.path.isfile(p) for p in paths):
        raise StardistMissing(
            "The nucleus sample's default data is the annotated DSB2018 image inside stardist's wheel, which is "
            "not installed. Install it without its dependencies (only its data files are read): "
            "python -m pip install --no-deps -r requirements-nodeps.txt (or: python -m pip install --no-deps "
            "stardist==0.9.2). Or pass --dataset=/path/to/dsb2018 (the folder holding stage1_train/).")
    return paths


def stardist_tiles(cache, progress=True):
    """The tiles' DSB2018-layout root, ``<cache>/nucleus_stardist_v<N>``, written on first use (into a temporary
    folder renamed when complete, so an interrupted write is never taken as done)."""
    import tifffile

    root = os.path.join(cache, f"nucleus_stardist_v{TILES_VERSION}")
    if os.path.isdir(root):
        return root
    image_path, label_path = stardist_files()
    image, labels = tifffile.imread(image_path), tifffile.imread(label_path)
    if image.shape != (GRID * TILE, GRID * TILE) or labels.shape != image.shape:
        raise ValueError(f"{image_path}, {label_path}: expected two {GRID * TILE}x{GRID * TILE} images, got "
                         f"{image.shape} and {labels.shape}")
    if image.max() > 255:
        raise ValueError(f"{image_path}: values up to {image.max()}; expected 8-bit values in a uint16 file")
    os.makedirs(cache, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=".partial-", dir=cache)
    try:
        if progress:
            print(f"Writing stardist's annotated DSB2018 image as {GRID * GRID} tiles into {root} (once)")
        dropped = 0
        for tile_id in TILE_IDS:
            row, col = (int(part[1:]) for part in tile_id.split("_")[1:])
            window = np.s_[row * TILE:(row + 1) * TILE, col * TILE:(col + 1) * TILE]
            folder = os.path.join(partial, "stage1_train", tile_id)
            os.makedirs(os.path.join(folder, "images"))
            os.makedirs(os.path.join(folder, "masks"))
            gray = image[window].astype(np.uint8)
            rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
            Image.fromarray(rgba, "RGBA").save(os.path.join(folder, "images", f"{tile_id}.png"))
            tile_labels = labels[window]
            count = 0
            for label in np.unique(tile_labels[tile_labels > 0]):
                parts, n = ndimage.label(tile_labels == label)
                for part in range(1, n + 1):
                    mask = parts == part
                    if mask.sum() < MIN_PART_PIXELS:
                        dropped += 1
                        continue
                    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(
                        os.path.join(folder, "masks", f"{tile_id}_{count:03d}.png"))
                    count += 1
        with open(os.path.join(partial, "tiles.json"), "w") as f:
            json.dump({"source": [image_path, label_path], "grid": GRID, "tile": TILE, "val": VAL_TILE_IDS,
                       "min_part_pixels": MIN_PART_PIXELS, "parts_left_out": dropped}, f, indent=1)
        os.replace(partial, root)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root
