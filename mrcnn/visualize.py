"""Pictures of images, masks, boxes and detections.

``draw_instances`` renders detections straight into an RGB array (no matplotlib figure), for overlay
PNGs of any image size written by command-line tools.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def random_colors(N, bright=True, seed=None):
    """``N`` visually distinct RGB colours in [0, 1] (evenly spaced hues), shuffled.

    seed: None shuffles with the global random state as Matterport did; an int gives the same colours
    every time.
    """
    brightness = 1.0 if bright else 0.7
    colors = [colorsys.hsv_to_rgb(i / max(N, 1), 1, brightness) for i in range(N)]
    order = (np.random if seed is None else np.random.default_rng(seed)).permutation(N)
    return [colors[i] for i in order]


def apply_mask(image, mask, color, alpha=0.5):
    """Blend ``color`` (RGB in [0, 1]) into ``image`` where ``mask`` is set; modifies and returns image."""
    mask = np.asarray(mask).astype(bool)
    for c in range(3):
        channel = image[:, :, c]
        channel[mask] = (channel[mask] * (1 - alpha) + alpha * color[c] * 255).astype(image.dtype)
    return image


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no scalable default font
        return ImageFont.load_default()


def draw_instances(image, boxes, masks, class_ids, class_names, scores=None, colors=None, alpha=0.5,
                   show_boxes=True):
    """The image as uint8 RGB with each instance's mask blended in, its box and ``"<class> <score>"``.

    boxes: ``[N, (y1, x1, y2, x2)]`` pixels; masks: ``[H, W, N]`` bool (or None); class_ids: ``[N]``
    indices into class_names; scores: ``[N]`` or None. One colour per class, stable across images.
    """
    image = np.array(image, dtype=np.uint8, copy=True)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = image[:, :, :3]
    boxes = np.asarray(boxes).reshape(-1, 4)
    n = len(boxes)
    if masks is not None and np.shape(masks)[-1] != n:
        raise ValueError(f"draw_instances: {n} boxes but {np.shape(masks)[-1]} masks")
    if len(class_ids) != n or (scores is not None and len(scores) != n):
        raise ValueError(f"draw_instances: {n} boxes, {len(class_ids)} class ids, "
                         f"{None if scores is None else len(scores)} scores")
    palette = colors or random_colors(len(class_names), seed=1)
    color_of = [palette[int(c) % len(palette)] for c in class_ids]
    for i in range(n):
        if masks is not None:
            apply_mask(image, masks[:, :, i], color_of[i], alpha)
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    font = _font(max(10, min(image.shape[:2]) // 40))
    for i in range(n):
        y1, x1, y2, x2 = (int(v) for v in boxes[i])
        rgb = tuple(int(255 * v) for v in color_of[i])
        if show_boxes:
            draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=rgb, width=max(1, min(image.shape[:2]) // 256))
        label = class_names[int(class_ids[i])]
        if scores is not None:
            label = f"{label} {float(scores[i]):.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), label, font=font)
        ty = max(0, y1 - (bottom - top) - 2)
        draw.rectangle([x1, ty, x1 + (right - left) + 2, ty + (bottom - top) + 2], fill=rgb)
        draw.text((x1 + 1, ty), label, fill=(255, 255, 255), font=font)
    return np.asarray(picture)
