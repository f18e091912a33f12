"""From model outputs to Matterport's detection dicts: boxes back to image pixels, masks pasted.

Mask pasting is vectorised: every pixel of every detection box is enumerated at once (no Python loop
over instances), bilinearly sampled from its 28x28 mask and thresholded at 0.5, as Matterport's
``utils.unmold_mask`` does with ``skimage.transform.resize(mask, box_size, order=1, mode="constant")``:
pixel centres at ``(i + 0.5) * 28 / box_size - 0.5``, and outside the 28x28 grid the mask is 0, so the
edge blends with 0 (clamping there instead, as OpenCV does, made masks 2-3% larger than Matterport's).
``mrcnn.masks.unmold_mask`` pastes one mask through the same code.
"""

from __future__ import annotations

import numpy as np

from mrcnn.boxes import denorm_boxes, norm_boxes


def paste_masks(masks, boxes, image_shape, threshold=0.5):
    """Paste ``[N, mh, mw]`` mask probabilities into an image-sized bool ``[H, W, N]`` array.

    boxes: ``[N, (y1, x1, y2, x2)]`` int pixel boxes (y2, x2 exclusive) the masks cover; parts outside
    the image are cut off.
    """
    masks = np.asarray(masks, dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    height, width = int(image_shape[0]), int(image_shape[1])
    count = len(boxes)
    full = np.zeros((height, width, count), dtype=bool)
    if count == 0:
        return full
    mh, mw = masks.shape[1:3]
    by1, bx1, by2, bx2 = boxes.T
    box_h = np.maximum(by2 - by1, 1)
    box_w = np.maximum(bx2 - bx1, 1)
    # The visible part of each box
    cy1, cx1 = np.clip(by1, 0, height), np.clip(bx1, 0, width)
    cy2, cx2 = np.clip(by2, 0, height), np.clip(bx2, 0, width)
    rows, cols = np.maximum(cy2 - cy1, 0), np.maximum(cx2 - cx1, 0)
    areas = rows * cols
    total = int(areas.sum())
    if total == 0:
        return full
    # Enumerate the pixels of all boxes: detection n, then row-major within its visible box.
    n = np.repeat(np.arange(count), areas)
    k = np.arange(total) - np.repeat(np.cumsum(areas) - areas, areas)
    y = cy1[n] + k // cols[n]
    x = cx1[n] + k % cols[n]
    # Pixel centre -> mask coordinate (half-pixel convention); beyond the mask's grid it is 0 (a zero
    # border around it, index + 1), as scikit-image's mode="constant".
    my = (y - by1[n] + 0.5) * (mh / box_h[n]) - 0.5
    mx = (x - bx1[n] + 0.5) * (mw / box_w[n]) - 0.5
    y0 = np.floor(my).astype(np.int64)
    x0 = np.floor(mx).astype(np.int64)
    wy = my - y0
    wx = mx - x0
    padded = np.pad(masks.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    y0, x0 = np.clip(y0 + 1, 0, mh + 1), np.clip(x0 + 1, 0, mw + 1)
    y1, x1 = np.minimum(y0 + 1, mh + 1), np.minimum(x0 + 1, mw + 1)
    value = ((1 - wy) * ((1 - wx) * padded[n, y0, x0] + wx * padded[n, y0, x1])
             + wy * ((1 - wx) * padded[n, y1, x0] + wx * padded[n, y1, x1]))
    inside = value >= threshold
    full[y[inside], x[inside], n[inside]] = True
    return full


def unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window):
    """One image's detections in the original image's pixel coordinates.

    detections: ``[max_instances, (y1, x1, y2, x2, class_id, score)]`` normalized, zero-padded;
    mrcnn_mask: ``[max_instances, mh, mw, num_classes]``; original_image_shape: ``(H, W, C)`` before
    resizing; image_shape: ``(H, W, C)`` of the molded image; window: ``(y1, x1, y2, x2)`` pixels of the
    image inside the molded one.

    Returns ``boxes`` int32 ``[N, (y1, x1, y2, x2)]``, ``class_ids`` int32 ``[N]``, ``scores`` float32
    ``[N]`` and ``masks`` bool ``[H, W, N]``. Detections whose box has no area are dropped.
    """
    detections = np.asarray(detections)
    count = int(np.count_nonzero(detections[:, 4] > 0))  # class 0 marks the padding
    detections = detections[:count]
    boxes = detections[:, :4]
    class_ids = detections[:, 4].astype(np.int32)
    scores = detections[:, 5].astype(np.float32)
    masks = np.asarray(mrcnn_mask)[np.arange(count), :, :, class_ids]

    # Normalized boxes relative to the window, then pixels of the original image
    window = norm_boxes(np.asarray(window, dtype=np.float64), image_shape[:2])
    wy1, wx1, wy2, wx2 = window
    shift = np.array([wy1, wx1, wy1, wx1])
    scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    # A window one pixel thin (an extreme aspect ratio) has no normalized extent: take one pixel's.
    pixel = 1.0 / np.maximum(np.array(image_shape[:2], dtype=np.float64) - 1, 1)
    scale = np.where(scale > 0, scale, np.tile(pixel, 2))
    boxes = denorm_boxes((boxes - shift) / scale, original_image_shape[:2])

    keep = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) > 0
    boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
    full_masks = paste_masks(masks, boxes, original_image_shape)
    return boxes, class_ids, scores, full_masks
