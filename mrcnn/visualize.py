"""Pictures of images, masks, boxes and detections (Matterport's ``visualize`` and more).

* ``draw_instances`` renders detections straight into an RGB array (no matplotlib figure), for overlay
  PNGs of any image size written by command-line tools.
* Matterport's matplotlib figures under their names and signatures, each with an extra ``path``: given,
  the figure is saved there as PNG and closed (scripts, tests, the Agg backend); omitted, it is shown.
* ``plot_training_curves(log_dir)`` (the five losses and their ``val_`` twins) and
  ``plot_ap_per_class(evaluation_json)`` (the bars of a Cityscapes evaluation).
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mrcnn.masks import unmold_mask


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


# ---------------------------------------------------------------------------------------------- matplotlib
# Matterport's figures. Each takes ``path``: given, the figure is saved there (PNG) and closed, which is
# how scripts and tests use them under the Agg backend; without it, the figure is shown (notebooks).
def _finish(fig, path):
    import matplotlib.pyplot as plt

    if path is not None:
        fig.savefig(path, dpi=fig.dpi, bbox_inches="tight", pad_inches=0.1)
        plt.close(fig)
    else:
        plt.show()
    return path


def _axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax, False
    fig, ax = plt.subplots(1, figsize=figsize)
    return fig, ax, True


def display_images(images, titles=None, cols=4, cmap=None, norm=None, interpolation=None, path=None):
    """Show images side by side, ``cols`` per row, with optional titles."""
    import matplotlib.pyplot as plt

    titles = titles if titles is not None else [""] * len(images)
    rows = len(images) // cols + 1
    fig = plt.figure(figsize=(14, 14 * rows // cols))
    for i, (image, title) in enumerate(zip(images, titles), start=1):
        ax = fig.add_subplot(rows, cols, i)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        ax.imshow(np.asarray(image).astype(np.uint8), cmap=cmap, norm=norm, interpolation=interpolation)
    return _finish(fig, path)


def display_instances(image, boxes, masks, class_ids, class_names, scores=None, title="", figsize=(16, 16),
                      ax=None, show_mask=True, show_bbox=True, colors=None, captions=None, path=None):
    """Matterport's picture of instances: masks, dashed boxes, class names and scores, mask outlines.

    boxes: ``[N, (y1, x1, y2, x2)]`` image pixels; masks: ``[H, W, N]``; class_ids: ``[N]``.
    """
    from matplotlib import patches
    from matplotlib.patches import Polygon
    from skimage.measure import find_contours

    n = boxes.shape[0]
    if not n:
        print("\n*** No instances to display *** \n")
    elif masks is not None and not boxes.shape[0] == masks.shape[-1] == len(class_ids):
        raise ValueError(f"display_instances: {boxes.shape[0]} boxes, {masks.shape[-1]} masks, "
                         f"{len(class_ids)} class ids")
    fig, ax, own = _axes(ax, figsize)
    colors = colors or random_colors(n)
    height, width = image.shape[:2]
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)
    masked = np.array(image, dtype=np.uint32, copy=True)
    for i in range(n):
        color = colors[i]
        if not np.any(boxes[i]):
            continue  # an instance cropped away by augmentation
        y1, x1, y2, x2 = boxes[i]
        if show_bbox:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=0.7, linestyle="dashed",
                                           edgecolor=color, facecolor="none"))
        if captions is None:
            label = class_names[class_ids[i]]
            caption = f"{label} {scores[i]:.3f}" if scores is not None else label
        else:
            caption = captions[i]
        ax.text(x1, y1 + 8, caption, color="w", size=11, backgroundcolor="none")
        if masks is None:
            continue
        mask = masks[:, :, i]
        if show_mask:
            masked = apply_mask(masked, mask, color)
        padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=np.uint8)
        padded[1:-1, 1:-1] = mask
        for verts in find_contours(padded, 0.5):
            ax.add_patch(Polygon(np.fliplr(verts) - 1, facecolor="none", edgecolor=color))
    ax.imshow(masked.astype(np.uint8))
    return _finish(fig, path) if own else None


def display_differences(image, gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
                        class_names, title="", ax=None, show_mask=True, show_box=True, iou_threshold=0.5,
                        score_threshold=0.5, path=None):
    """Ground truth (green) and predictions (red) together; captions say score and IoU of each match."""
    from mrcnn.evaluation.ap import compute_matches

    gt_match, pred_match, overlaps = compute_matches(
        gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
        iou_threshold=iou_threshold, score_threshold=score_threshold)
    colors = [(0, 1, 0, 0.8)] * len(gt_match) + [(1, 0, 0, 1)] * len(pred_match)
    class_ids = np.concatenate([gt_class_id, pred_class_id])
    scores = np.concatenate([np.zeros([len(gt_match)]), pred_score])
    boxes = np.concatenate([gt_box, pred_box])
    masks = np.concatenate([gt_mask, pred_mask], axis=-1)
    captions = ["" for _ in gt_match] + [
        "{:.2f} / {:.2f}".format(pred_score[i], overlaps[i, int(pred_match[i])] if pred_match[i] > -1
                                 else overlaps[i].max(initial=0)) for i in range(len(pred_match))]
    title = title or "Ground Truth and Detections\n GT=green, pred=red, captions: score/IoU"
    return display_instances(image, boxes, masks, class_ids, class_names, scores, ax=ax, show_bbox=show_box,
                             show_mask=show_mask, colors=colors, captions=captions, title=title, path=path)


def draw_rois(image, rois, refined_rois, mask, class_ids, class_names, limit=10, path=None):
    """Up to ``limit`` random positive ROIs (dashed), their refinements (solid) and the link between them.

    mask: each ROI's mask of its class ``[rois, h, w]`` (Matterport's ``mask_specific``) or of every class
    ``[rois, h, w, classes]``; class_ids: ``[rois]`` or the generator's ``[rois, 1]``."""
    from matplotlib import lines, patches

    class_ids, mask = np.asarray(class_ids).reshape(rois.shape[0]), np.asarray(mask)
    masked = np.array(image, dtype=np.uint32, copy=True)
    fig, ax, _ = _axes(None, (12, 12))
    ids = np.arange(rois.shape[0], dtype=np.int32)
    ids = np.random.choice(ids, limit, replace=False) if ids.shape[0] > limit else ids  # noqa: NPY002
    colors = random_colors(len(ids))
    ax.set_ylim(image.shape[0] + 20, -20)
    ax.set_xlim(-50, image.shape[1] + 20)
    ax.axis("off")
    for i, color in zip(ids, colors):
        class_id = class_ids[i]
        y1, x1, y2, x2 = rois[i]
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, edgecolor=color if class_id
                                       else "gray", facecolor="none", linestyle="dashed"))
        if class_id:
            ry1, rx1, ry2, rx2 = refined_rois[i]
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2, edgecolor=color,
                                           facecolor="none"))
            ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
            ax.text(rx1, ry1 + 8, class_names[class_id], color="w", size=11, backgroundcolor="none")
            roi_mask = mask[i] if mask.ndim == 3 else mask[i][:, :, class_id]
            m = unmold_mask(roi_mask, rois[i][:4].astype(np.int32), image.shape)
            masked = apply_mask(masked, m, color)
    ax.imshow(masked.astype(np.uint8))
    print(f"Positive ROIs: {len(class_ids[class_ids > 0])}")
    print(f"Negative ROIs: {len(class_ids[class_ids == 0])}")
    print(f"Positive Ratio: {np.sum(class_ids > 0) / max(len(class_ids), 1):.2f}")
    return _finish(fig, path)


def draw_box(image, box, color):
    """Draw a 3-pixel box ``(y1, x1, y2, x2)`` of ``color`` (RGB 0-255) into ``image``; returns it."""
    y1, x1, y2, x2 = box
    image[y1:y1 + 2, x1:x2] = color
    image[y2:y2 + 2, x1:x2] = color
    image[y1:y2, x1:x1 + 2] = color
    image[y1:y2, x2:x2 + 2] = color
    return image


def display_top_masks(image, mask, class_ids, class_names, limit=4, path=None):
    """The image and the union mask of each of the ``limit`` classes with the most mask pixels."""
    to_display, titles = [image], [f"H x W={image.shape[0]}x{image.shape[1]}"]
    unique_class_ids = np.unique(class_ids)
    area = [np.sum(mask[:, :, np.where(class_ids == i)[0]]) for i in unique_class_ids]
    top_ids = [v[0] for v in sorted(zip(unique_class_ids, area), key=lambda r: r[1], reverse=True) if v[1] > 0]
    for i in range(limit):
        class_id = top_ids[i] if i < len(top_ids) else -1
        m = mask[:, :, np.where(class_ids == class_id)[0]]
        to_display.append(np.sum(m * np.arange(1, m.shape[-1] + 1), -1) if m.size else np.zeros(image.shape[:2]))
        titles.append(class_names[class_id] if class_id != -1 else "-")
    return display_images(to_display, titles=titles, cols=limit + 1, cmap="Blues_r", path=path)


def plot_precision_recall(AP, precisions, recalls, path=None):
    """The precision-recall curve, titled with its AP."""
    fig, ax, _ = _axes(None, (6, 5))
    ax.set_title(f"Precision-Recall Curve. AP@50 = {AP:.3f}")
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.plot(recalls, precisions)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    return _finish(fig, path)


def plot_overlaps(gt_class_ids, pred_class_ids, pred_scores, overlaps, class_names, threshold=0.5, path=None):
    """The IoU grid of predictions (rows) against ground truth (columns), matches marked."""
    import itertools

    import matplotlib.pyplot as plt

    gt_class_ids = gt_class_ids[gt_class_ids != 0]
    pred_class_ids = pred_class_ids[pred_class_ids != 0]
    fig = plt.figure(figsize=(12, 10))
    plt.imshow(overlaps, interpolation="nearest", cmap=plt.cm.Blues)
    plt.yticks(np.arange(len(pred_class_ids)),
               [f"{class_names[int(i)]} ({pred_scores[k]:.2f})" for k, i in enumerate(pred_class_ids)])
    plt.xticks(np.arange(len(gt_class_ids)), [class_names[int(i)] for i in gt_class_ids], rotation=90)
    thresh = overlaps.max(initial=0) / 2.0
    for i, j in itertools.product(range(overlaps.shape[0]), range(overlaps.shape[1])):
        text = ""
        if overlaps[i, j] > threshold:
            text = "match" if gt_class_ids[j] == pred_class_ids[i] else "wrong"
        color = "white" if overlaps[i, j] > thresh else ("black" if overlaps[i, j] > 0 else "grey")
        plt.text(j, i, f"{overlaps[i, j]:.3f}\n{text}", horizontalalignment="center",
                 verticalalignment="center", fontsize=9, color=color)
    plt.tight_layout()
    plt.xlabel("Ground Truth")
    plt.ylabel("Predictions")
    return _finish(fig, path)


def draw_boxes(image, boxes=None, refined_boxes=None, masks=None, captions=None, visibilities=None, title="",
               ax=None, path=None):
    """Boxes (dashed), refined boxes (solid) with a line from each box to its refinement, masks, captions.

    visibilities: per box 0 (skip), 1 (faint) or 2 (full), as Matterport.
    """
    from matplotlib import lines, patches

    n = boxes.shape[0] if boxes is not None else refined_boxes.shape[0]
    fig, ax, own = _axes(ax, (12, 12))
    colors = random_colors(n)
    margin = image.shape[0] // 10
    ax.set_ylim(image.shape[0] + margin, -margin)
    ax.set_xlim(-margin, image.shape[1] + margin)
    ax.axis("off")
    ax.set_title(title)
    masked = np.array(image, dtype=np.uint32, copy=True)
    for i in range(n):
        visibility = visibilities[i] if visibilities is not None else 1
        if visibility == 0:
            continue
        color, style, alpha = ((colors[i], "dotted", 0.5) if visibility == 1 else
                               (colors[i], "solid", 1.0))
        if visibility == 0.5:
            color, style, alpha = "gray", "dotted", 0.5
        if boxes is not None and np.any(boxes[i]):
            y1, x1, y2, x2 = boxes[i]
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=alpha, linestyle=style,
                                           edgecolor=color, facecolor="none"))
        if refined_boxes is not None and visibility > 0:
            ry1, rx1, ry2, rx2 = refined_boxes[i].astype(np.int32)
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2, edgecolor=color,
                                           facecolor="none"))
            if boxes is not None:
                ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
        if captions is not None:
            y1, x1 = (boxes if boxes is not None else refined_boxes)[i][:2]
            ax.text(x1, y1, captions[i], size=11, verticalalignment="top", color="w", backgroundcolor="none",
                    bbox={"facecolor": color, "alpha": 0.5, "pad": 2, "edgecolor": "none"})
        if masks is not None:
            masked = apply_mask(masked, masks[:, :, i], color if not isinstance(color, str) else (0.5, 0.5, 0.5))
    ax.imshow(masked.astype(np.uint8))
    return _finish(fig, path) if own else None


def display_table(table):
    """An HTML table in a notebook (rows of cells); returns the HTML."""
    html = "".join("<tr>" + "".join(f"<td>{col}</td>" for col in row) + "</tr>" for row in table)
    html = "<table>" + html + "</table>"
    try:
        from IPython.display import HTML, display

        display(HTML(html))
    except ImportError:
        print(html)
    return html


def display_weight_stats(model, limit=None):
    """Per weight: shape, min, max, std; flags suspicious ones (constant, exploded). ``model``: MaskRCNN.

    limit: show only the first ``limit`` weights (all by default, as Matterport).
    """
    import keras

    keras_model = getattr(model, "keras_model", model)
    table = [["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]]
    weights = [(layer, weight) for layer in keras_model.layers for weight in layer.weights]
    for layer, weight in weights[:limit]:
        values = np.asarray(weight.numpy())
        alert = ""
        if values.min() == values.max() and not (isinstance(layer, keras.layers.Conv2D)
                                                 and weight.path.endswith("bias")):
            alert += "<span style='color:red'>*** dead?</span>"
        if np.abs(values.min()) > 1000 or np.abs(values.max()) > 1000:
            alert += "<span style='color:red'>*** Overflow?</span>"
        table.append([weight.path + alert, str(values.shape), f"{values.min():+9.4f}",
                      f"{values.max():+10.4f}", f"{values.std():+9.4f}"])
    return display_table(table)


# ---------------------------------------------------------------------------------------------- run pictures
def plot_training_curves(log_dir, path=None):
    """The five losses and their ``val_`` twins per epoch, from ``<log_dir>/training_log.csv``."""
    import csv
    import os

    import matplotlib.pyplot as plt

    from mrcnn.losses import LOSS_NAMES

    csv_path = os.path.join(log_dir, "training_log.csv")
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"plot_training_curves: no {csv_path} (written by MaskRCNN.train)")
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    names = ("loss",) + tuple(LOSS_NAMES)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, name in zip(axes.ravel(), names):
        for key, style in ((name, "-o"), ("val_" + name, "--s")):
            if rows and key in rows[0]:
                ax.plot(epochs, [float(r[key]) for r in rows], style, label=key)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    return _finish(fig, path)


def plot_ap_per_class(evaluation, path=None, title="Cityscapes instance AP per class"):
    """Bars of AP and AP50 per class from an evaluation JSON (path or dict from ``cityscapes.py evaluate``)."""
    import json

    if isinstance(evaluation, str):
        with open(evaluation) as f:
            evaluation = json.load(f)
    classes = list(evaluation["classes"])
    ap = [np.nan_to_num(evaluation["classes"][c]["AP"]) for c in classes]
    ap50 = [np.nan_to_num(evaluation["classes"][c]["AP50"]) for c in classes]
    fig, ax, _ = _axes(None, (10, 4.5))
    x = np.arange(len(classes))
    ax.bar(x - 0.2, ap, 0.4, label=f"AP (mean {evaluation['AP']:.3f})")
    ax.bar(x + 0.2, ap50, 0.4, label=f"AP50 (mean {evaluation['AP50']:.3f})")
    ax.set_xticks(x, classes, rotation=30)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _finish(fig, path)
