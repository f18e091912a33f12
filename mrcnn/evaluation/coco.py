"""COCO-style AP of instance masks and boxes, with pycocotools: one scorer for every sample and benchmark."""

from __future__ import annotations

import contextlib
import os

import numpy as np


def coco_ap(gt_entries, predictions, category_ids, max_detections=100):
    """COCO-style bbox and segm AP (pycocotools' COCOeval), crowd regions (Cityscapes groups) as ``iscrowd``.

    gt_entries: per image ``(image_id, height, width, masks [H, W, N], category ids [N], crowd [N])``;
    predictions: per image ``(image_id, masks [H, W, M], category ids [M], scores [M])``;
    max_detections: the detections per image scored, highest scores first (COCO's 100).
    Returns ``{"bbox": {"AP", "AP50"}, "segm": {"AP", "AP50"}}``.
    """
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def encode(mask):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        return rle

    images, annotations, results = [], [], []
    for image_id, height, width, masks, cats, crowd in gt_entries:
        images.append({"id": image_id, "height": height, "width": width})
        for i in range(masks.shape[-1]):
            rle = encode(masks[:, :, i])
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cats[i]),
                                "segmentation": rle, "area": float(mask_utils.area(rle)),
                                "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": int(crowd[i])})
    for image_id, masks, cats, scores in predictions:
        for i in range(masks.shape[-1]):
            rle = encode(masks[:, :, i])
            results.append({"image_id": image_id, "category_id": int(cats[i]), "segmentation": rle,
                            "bbox": mask_utils.toBbox(rle).tolist(), "score": float(scores[i])})
    summary = {}
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c} for c in category_ids]}
        gt.createIndex()
        for kind in ("bbox", "segm"):
            if not results:
                summary[kind] = {"AP": 0.0, "AP50": 0.0}
                continue
            evaluator = COCOeval(gt, gt.loadRes(results), kind)
            evaluator.params.maxDets = [1, 10, int(max_detections)]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            summary[kind] = {"AP": float(evaluator.stats[0]), "AP50": float(evaluator.stats[1])}
    return summary
