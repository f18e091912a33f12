"""A format-true synthetic Cityscapes tree: real layout, file names, polygon JSON, official PNGs.

Writes, for each subset and city::

    leftImg8bit/<subset>/<city>/<city>_<seq:06d>_000019_leftImg8bit.png
    gtFine/<subset>/<city>/<city>_<seq:06d>_000019_gtFine_polygons.json
    gtFine/<subset>/<city>/<city>_<seq:06d>_000019_gtFine_instanceIds.png   (16-bit, official converter)
    gtFine/<subset>/<city>/<city>_<seq:06d>_000019_gtFine_labelIds.png      (8-bit, official converter)

Scenes are street-like and learnable: sky, buildings, sidewalk and road as stuff polygons, and objects
of the instance classes, each class with its own colour and shape (people tall and narrow, cars wide,
buses big...). They also carry the cases the format has: occlusion, group regions, license plates,
deleted objects, polygons reaching out of the frame, tiny objects, and now and then a frame with no
instance at all. The PNG ground truth comes from ``cityscapesscripts`` itself.

Usage: ``python samples/cityscapes/synthetic.py --out /tmp/cityscapes_synth [--train 24 --val 8]``
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from cityscapesscripts.preparation.json2labelImg import createLabelImage
from PIL import Image, ImageDraw
from tqdm import tqdm

CITIES = {"train": ("aachen", "bochum", "bremen"), "val": ("frankfurt", "lindau", "munster")}
FRAME = 19  # the annotated frame of each Cityscapes snippet

# label: (RGB colour, height range as a fraction of the frame height, width / height ratio range)
LOOKS = {
    "person": ((220, 20, 60), (0.18, 0.30), (0.30, 0.45)),
    "rider": ((255, 0, 0), (0.18, 0.28), (0.45, 0.60)),
    "car": ((0, 0, 142), (0.12, 0.22), (1.6, 2.2)),
    "truck": ((0, 0, 70), (0.22, 0.32), (1.6, 2.0)),
    "bus": ((0, 60, 100), (0.28, 0.38), (2.2, 2.8)),
    "train": ((0, 80, 100), (0.26, 0.34), (3.0, 4.0)),
    "motorcycle": ((0, 0, 230), (0.10, 0.14), (1.0, 1.3)),
    "bicycle": ((119, 11, 32), (0.10, 0.14), (1.3, 1.6)),
    "caravan": ((0, 0, 90), (0.20, 0.26), (1.8, 2.2)),
    "trailer": ((0, 0, 110), (0.14, 0.20), (1.6, 2.0)),
}
STUFF = {"sky": (70, 130, 180), "building": (70, 70, 70), "sidewalk": (244, 35, 232), "road": (128, 64, 128)}
PLATE = (250, 250, 250)


def _box_polygon(y1, x1, y2, x2, kind, rng):
    """A polygon for an object: rounded-ish for people and two-wheelers, a box with a roof otherwise."""
    if kind in ("person", "rider", "motorcycle", "bicycle"):
        cy, cx, ry, rx = (y1 + y2) / 2, (x1 + x2) / 2, (y2 - y1) / 2, (x2 - x1) / 2
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        return [[int(round(cx + rx * np.cos(a))), int(round(cy + ry * np.sin(a)))] for a in angles]
    roof = int(round((y2 - y1) * rng.uniform(0.1, 0.3)))
    inset = int(round((x2 - x1) * 0.15))
    return [[x1, y2], [x1, y1 + roof], [x1 + inset, y1], [x2 - inset, y1], [x2, y1 + roof], [x2, y2]]


def random_scene(rng, height, width, instance_rate=0.9):
    """Polygon objects of one frame, in drawing order (the JSON's ``objects``)."""
    horizon = int(height * rng.uniform(0.35, 0.5))
    objects = [
        {"label": "sky", "polygon": [[0, 0], [width, 0], [width, horizon], [0, horizon]]},
        {"label": "building", "polygon": [[0, int(horizon * 0.5)], [width // 3, int(horizon * 0.3)],
                                          [width, int(horizon * 0.6)], [width, horizon + 5], [0, horizon + 5]]},
        {"label": "sidewalk", "polygon": [[0, horizon], [width, horizon], [width, horizon + 12], [0, horizon + 12]]},
        {"label": "road", "polygon": [[0, horizon + 10], [width, horizon + 10], [width, height], [0, height]]},
    ]
    if rng.random() > instance_rate:
        return objects
    names = list(LOOKS)
    weights = np.array([4, 1, 5, 1, 1, 1, 1, 1, 0.5, 0.5])
    for _ in range(int(rng.integers(2, 7))):
        kind = names[rng.choice(len(names), p=weights / weights.sum())]
        _, (hmin, hmax), (rmin, rmax) = LOOKS[kind]
        h = int(height * rng.uniform(hmin, hmax))
        w = max(2, int(h * rng.uniform(rmin, rmax)))
        bottom = int(rng.uniform(horizon + 0.3 * (height - horizon), height + 0.05 * height))
        x1 = int(rng.uniform(-0.1 * w, width - 0.9 * w))  # may reach outside the frame
        objects.append({"label": kind, "polygon": _box_polygon(bottom - h, x1, bottom, x1 + w, kind, rng)})
        if kind == "car" and rng.random() < 0.5:  # a license plate: drawn in the image, never in the GT
            px, py = x1 + w // 2, bottom - h // 5
            objects.append({"label": "license plate",
                            "polygon": [[px - 4, py - 2], [px + 4, py - 2], [px + 4, py + 2], [px - 4, py + 2]]})
    if rng.random() < 0.3:  # a group region far away
        gy, gx = horizon + 4, int(rng.uniform(0, width - 40))
        objects.append({"label": rng.choice(["cargroup", "persongroup"]),
                        "polygon": [[gx, gy], [gx + 40, gy], [gx + 40, gy + 12], [gx, gy + 12]]})
    if rng.random() < 0.3:  # a deleted object: ignored by every reader
        objects.append({"label": "car", "deleted": 1, "polygon": [[5, height - 30], [60, height - 30],
                                                                  [60, height - 5], [5, height - 5]]})
    if rng.random() < 0.3:  # a tiny, distant pedestrian
        ty, tx = horizon + 2, int(rng.uniform(0, width - 4))
        objects.append({"label": "person", "polygon": [[tx, ty], [tx + 3, ty], [tx + 3, ty + 6], [tx, ty + 6]]})
    return objects


def paint(objects, height, width, rng):
    """The RGB frame: each polygon filled with its class colour (plus noise), in file order."""
    image = Image.new("RGB", (width, height), (0, 0, 0))
    drawer = ImageDraw.Draw(image)
    for obj in objects:
        if obj.get("deleted"):
            continue
        label = obj["label"]
        base = label[: -len("group")] if label.endswith("group") else label
        color = STUFF.get(base) or (LOOKS[base][0] if base in LOOKS else PLATE)
        jitter = rng.integers(-12, 13, size=3)
        drawer.polygon([tuple(p) for p in obj["polygon"]],
                       fill=tuple(int(c) for c in np.clip(np.array(color) + jitter, 0, 255)))
    array = np.asarray(image).astype(np.int16)
    array += rng.integers(-6, 7, size=array.shape, dtype=np.int16)
    return np.clip(array, 0, 255).astype(np.uint8)


def write_frame(root, subset, city, seq, objects, image):
    """Write one frame's image, polygon JSON and the official instanceIds / labelIds PNGs."""
    stem = f"{city}_{seq:06d}_{FRAME:06d}"
    image_dir = os.path.join(root, "leftImg8bit", subset, city)
    gt_dir = os.path.join(root, "gtFine", subset, city)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(gt_dir, exist_ok=True)
    Image.fromarray(image).save(os.path.join(image_dir, f"{stem}_leftImg8bit.png"))
    json_path = os.path.join(gt_dir, f"{stem}_gtFine_polygons.json")
    with open(json_path, "w") as f:
        json.dump({"imgHeight": image.shape[0], "imgWidth": image.shape[1], "objects": objects}, f)
    annotation = Annotation()
    annotation.fromJsonFile(json_path)
    # 16-bit PNG, as the official files (saving mode "I" as PNG is deprecated in Pillow 12)
    instance_ids = createInstanceImage(annotation, "ids").convert("I;16")
    instance_ids.save(os.path.join(gt_dir, f"{stem}_gtFine_instanceIds.png"))
    createLabelImage(annotation, "ids").save(os.path.join(gt_dir, f"{stem}_gtFine_labelIds.png"))
    return json_path


def generate(root, counts=None, height=256, width=512, seed=0, progress=True):
    """Write a synthetic Cityscapes tree under ``root``; ``counts`` maps subset to number of frames.

    Frames are spread over the subset's cities. Returns ``root``.
    """
    counts = counts or {"train": 24, "val": 8}
    rng = np.random.default_rng(seed)
    jobs = [(subset, CITIES[subset][i % len(CITIES[subset])], i) for subset, n in counts.items()
            for i in range(n)]
    for subset, city, i in tqdm(jobs, desc="synthetic Cityscapes", disable=not progress, unit="frame"):
        objects = random_scene(rng, height, width)
        write_frame(root, subset, city, i, objects, paint(objects, height, width, rng))
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write a synthetic, format-true Cityscapes tree.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--train", type=int, default=24)
    parser.add_argument("--val", type=int, default=8)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    generate(args.out, {"train": args.train, "val": args.val}, args.height, args.width, args.seed)
    print(args.out)


if __name__ == "__main__":
    main()
