"""Inference: images to Matterport's detection dicts, one path on every backend.

Each image is molded in NumPy (:func:`mold_inputs`: Matterport's ``resize_image``, ``mold_image`` and
``compose_image_meta``), the network runs on up to ``BATCH_SIZE`` images of one molded size at a time, and each
image's detections are unmolded in NumPy (mrcnn.postprocess: boxes back to image pixels, masks pasted at the
image size). The exported model does the same inside Keras layers (mrcnn.export).
"""

from __future__ import annotations

import keras
import numpy as np

from mrcnn import utils
from mrcnn.data.image_meta import compose_image_meta, mold_image, parse_image_meta
from mrcnn.imaging import resize_scale
from mrcnn.inputs import as_images
from mrcnn.postprocess import unmold_detections

MAX_MOLDED_PIXELS = 1 << 26  # detect(): a larger molded image is refused (its float32 input alone is 768 MiB)


def mold_inputs(config, images):
    """Resize and normalize images for the model.

    Returns ``molded_images`` ``[N, H, W, C]``, ``image_metas`` ``[N, IMAGE_META_SIZE]`` and
    ``windows`` ``[N, (y1, x1, y2, x2)]``. All images must mold to the same size (true in "square"
    mode; :func:`detect` groups images by molded size otherwise).
    """
    molded_images, image_metas, windows = [], [], []
    for image in images:
        molded_image, window, scale, _, _ = utils.resize_image(
            image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
            max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
        molded_images.append(mold_image(molded_image, config))
        image_metas.append(compose_image_meta(0, image.shape, molded_image.shape, window, scale,
                                              np.zeros([config.NUM_CLASSES], dtype=np.int32)))
        windows.append(window)
    return np.stack(molded_images), np.stack(image_metas), np.array(windows)


def check_molded_size(config, image, index):
    """Refuse, naming the image, one that would mold to nothing or to more than MAX_MOLDED_PIXELS."""
    height, width = image.shape[:2]
    scale = resize_scale(height, width, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM, config.IMAGE_MIN_SCALE,
                         config.IMAGE_RESIZE_MODE)
    if config.IMAGE_RESIZE_MODE == "none":
        return
    size = (round(height * scale), round(width * scale))
    if min(size) < 1:
        raise ValueError(
            f"detect: images[{index}] of shape {image.shape} would shrink to {size[0]}x{size[1]} pixels "
            f"({config.IMAGE_RESIZE_MODE} mode, IMAGE_MAX_DIM={config.IMAGE_MAX_DIM}): its aspect ratio "
            f"is too extreme; split or pad it first")
    if size[0] * size[1] > MAX_MOLDED_PIXELS:
        raise ValueError(
            f"detect: images[{index}] of shape {image.shape} would grow to {size[0]}x{size[1]} pixels "
            f"({config.IMAGE_RESIZE_MODE} mode scales the short side up to IMAGE_MIN_DIM="
            f"{config.IMAGE_MIN_DIM}), more than {MAX_MOLDED_PIXELS} pixels; split or pad it first")


def predict(network, molded_images, image_metas):
    """The inference network's outputs (NumPy) on molded images and their metas."""
    outputs = network.predict_on_batch([np.asarray(molded_images, np.float32),
                                        np.asarray(image_metas).astype(np.float32)])
    return [keras.ops.convert_to_numpy(o) for o in outputs]


def network_batches(molded_shapes, batch_size):
    """Indices of the images the network runs on together: the same molded size, at most ``batch_size``."""
    groups = {}
    for i, shape in enumerate(molded_shapes):
        groups.setdefault(tuple(shape[1:]), []).append(i)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            yield indices[start:start + batch_size]


def detect(network, config, images, verbose=0, molded_shapes=None):
    """``MaskRCNN.detect`` (see there): images of any size and layout -> one dict per image. ``molded_shapes``:
    a list that receives each image's molded ``(H, W, C)``."""
    images = as_images(images)
    if verbose:
        print(f"Processing {len(images)} images")
    for i, image in enumerate(images):
        check_molded_size(config, image, i)
    results = [None] * len(images)
    molded = [mold_inputs(config, [image]) for image in images]  # (molded [1, H, W, 3], meta, window) each
    if molded_shapes is not None:
        molded_shapes.extend(m[0].shape[1:] for m in molded)
    for chunk in network_batches([m[0].shape for m in molded], config.BATCH_SIZE):
        outputs = predict(network, np.concatenate([molded[i][0] for i in chunk]),
                          np.concatenate([molded[i][1] for i in chunk]))
        for j, i in enumerate(chunk):
            rois, class_ids, scores, masks = unmold_detections(
                outputs[0][j], outputs[3][j], images[i].shape, molded[i][0].shape[1:], molded[i][2][0])
            results[i] = {"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks}
    return results


def detect_molded(network, molded_images, image_metas):
    """``MaskRCNN.detect_molded`` (see there): detections in the molded images' original sizes."""
    outputs = predict(network, molded_images, image_metas)
    results = []
    for j, meta in enumerate(image_metas):
        parsed = parse_image_meta(meta)
        rois, class_ids, scores, masks = unmold_detections(
            outputs[0][j], outputs[3][j], parsed["original_image_shape"], molded_images[j].shape,
            parsed["window"])
        results.append({"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks})
    return results
