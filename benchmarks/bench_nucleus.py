"""mrcnn against torchvision's Mask R-CNN on real nuclei, printed as JSON: the held-out mask AP of each, over
seeds.

The data is the nucleus sample's default (samples/nucleus/tiles.py): stardist's annotated DSB2018 image as 16
tiles of 128x128, the upper 12 trained on, the last row of 4 (41 nuclei) held out. Both models train from
random weights with one protocol, the sample's TilesConfig:

* ResNet-50 FPN, batch norm trained (torchvision's default without pretrained weights; TRAIN_BN=True), the
  ground-truth boxes among the heads' ROIs (torchvision always; TRAIN_ADD_GT_PROPOSALS=True);
* images at 128x128, the same input (torchvision's transform given ``image_mean`` = MEAN_PIXEL / 255 and
  ``image_std`` = 1 / 255, so it feeds the network ``255 x - MEAN_PIXEL`` as mrcnn molds it);
* anchors of 8 to 128 pixels, one size per level, ratios 0.5, 1, 2; RPN: 64 anchors per image, half positive
  at most, NMS at 0.7, 500 proposals in training and inference; heads: 128 ROIs per image, 33% positive, masks
  28x28 from 14x14 pooling; detections: up to 100 per image, any score, NMS at 0.3;
* SGD, momentum 0.9, learning rate 0.01 warmed up linearly from 0.001 of it over the first 100 steps, global
  gradient norm clipped at 5; weight decay 1e-4 (Matterport's L2 in mrcnn, SGD's in torch: each framework's
  own form);
* the sample's augmentation (Matterport's: up to two of flips, quarter turns, brightness and blur, imgaug),
  batches of 2 tiles drawn in a seeded order, ``--steps`` steps;
* each run in its own process, ``--threads`` threads each, torch with OMP_WAIT_POLICY=PASSIVE.

Both are scored by one function, mrcnn.evaluation.coco.coco_ap (pycocotools), on the held-out tiles. The JSON
gives, per framework, each seed's mask AP, AP50, box AP, detections and seconds per step, their means and
standard deviations, and whether mrcnn's mean mask AP is at least torchvision's mean minus one standard
deviation. Where torchvision's compiled ops cannot load (benchmarks/torchvision_ops.py), its NMS runs as
Python: its step times then are not comparable, its results are.

torchvision is a benchmark-only dependency: ``pip install --no-deps torchvision==0.28.0`` beside the
backends' torch.

Usage: ``python benchmarks/bench_nucleus.py [--seeds 0 1 2] [--steps 600] [--threads 2]
[--frameworks mrcnn torchvision] [--parallel]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path[:0] = [ROOT, os.path.dirname(os.path.abspath(__file__))]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _dataset(subset):
    from mrcnn.cli import cache_dir
    from samples.nucleus.nucleus import load_subset
    from samples.nucleus.tiles import stardist_tiles

    return load_subset(stardist_tiles(cache_dir(), progress=False), subset)


def _config(steps):
    from samples.nucleus.nucleus import TilesConfig

    return TilesConfig(STEPS_PER_EPOCH=min(steps, 50))


# ---------------------------------------------------------------------------------------------- mrcnn
def run_mrcnn(seed, steps, threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from mrcnn import model as modellib
    from mrcnn.costs import StepTimer
    from samples.nucleus import nucleus

    config = _config(steps)
    train_set, val_set = _dataset("train"), _dataset("val")
    timer = StepTimer(skip=1)
    with tempfile.TemporaryDirectory() as logs:
        model = modellib.MaskRCNN("training", config, logs, seed=seed)
        model.train(train_set, val_set, learning_rate=config.LEARNING_RATE,
                    epochs=max(1, steps // config.STEPS_PER_EPOCH), layers="all",
                    augmentation=nucleus.augmentation(), custom_callbacks=[timer], verbose=0)
        inference = modellib.MaskRCNN("inference", nucleus.TilesInferenceConfig(), logs)
        inference.load_weights(model.find_last())
        summary = nucleus.evaluate(inference, val_set, progress=False)
    times = timer.times
    return summary, times


# ---------------------------------------------------------------------------------------------- torchvision
def torchvision_model(config):
    from torchvision_ops import import_torchvision

    torchvision, compiled = import_torchvision()
    from torchvision.models.detection import maskrcnn_resnet50_fpn
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    anchors = AnchorGenerator(sizes=tuple((int(s),) for s in config.RPN_ANCHOR_SCALES),
                              aspect_ratios=(tuple(float(r) for r in config.RPN_ANCHOR_RATIOS),) * 5)
    model = maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=config.NUM_CLASSES, trainable_backbone_layers=5,
        min_size=int(config.IMAGE_MIN_DIM), max_size=int(config.IMAGE_MAX_DIM),
        image_mean=[float(m) / 255 for m in config.MEAN_PIXEL], image_std=[1 / 255] * 3,
        rpn_anchor_generator=anchors, rpn_batch_size_per_image=config.RPN_TRAIN_ANCHORS_PER_IMAGE,
        rpn_pre_nms_top_n_train=config.PRE_NMS_LIMIT, rpn_pre_nms_top_n_test=config.PRE_NMS_LIMIT,
        rpn_post_nms_top_n_train=config.POST_NMS_ROIS_TRAINING,
        rpn_post_nms_top_n_test=config.POST_NMS_ROIS_INFERENCE, rpn_nms_thresh=config.RPN_NMS_THRESHOLD,
        box_batch_size_per_image=config.TRAIN_ROIS_PER_IMAGE, box_positive_fraction=config.ROI_POSITIVE_RATIO,
        box_score_thresh=config.DETECTION_MIN_CONFIDENCE, box_nms_thresh=config.DETECTION_NMS_THRESHOLD,
        box_detections_per_img=config.DETECTION_MAX_INSTANCES)
    return model, compiled


def _torch_sample(dataset, config, image_id, augmentation, rng):
    import random

    import numpy as np
    import torch

    from mrcnn.data.generator import _seeded_copy
    from mrcnn.data.loading import load_image_gt

    image, _, class_ids, boxes, masks = load_image_gt(
        dataset, config, image_id, augmentation=_seeded_copy(augmentation, int(rng.integers(2**31))),
        use_mini_mask=False, rng=random.Random(int(rng.integers(2**31))))
    keep = class_ids > 0
    return (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0,
            {"boxes": torch.from_numpy(boxes[keep][:, [1, 0, 3, 2]].astype(np.float32)),
             "labels": torch.from_numpy(class_ids[keep].astype(np.int64)),
             "masks": torch.from_numpy(np.moveaxis(masks[:, :, keep], -1, 0).astype(np.uint8))})


def run_torchvision(seed, steps, threads):
    import numpy as np
    import torch

    from samples.nucleus import nucleus

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    config = _config(steps)
    model, compiled = torchvision_model(config)
    train_set, val_set = _dataset("train"), _dataset("val")
    augmentation = nucleus.augmentation()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=config.LEARNING_RATE, momentum=config.LEARNING_MOMENTUM,
                                weight_decay=config.WEIGHT_DECAY)
    warmup = config.LEARNING_RATE_WARMUP_STEPS
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 1.0 if step >= warmup else 0.001 + (1 - 0.001) * step / warmup)
    rng = np.random.default_rng((seed, 7))
    order, times = [], []
    model.train()
    for step in range(steps):
        batch = []
        while len(batch) < config.IMAGES_PER_GPU:
            if not order:
                order = list(rng.permutation(train_set.image_ids))
            batch.append(_torch_sample(train_set, config, int(order.pop()), augmentation, rng))
        images, targets = zip(*batch)
        start = time.perf_counter()
        losses = model(list(images), list(targets))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"torchvision: loss {float(loss)} at step {step}")
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.GRADIENT_CLIP_NORM)
        optimizer.step()
        scheduler.step()
        times.append(time.perf_counter() - start)
    model.eval()
    from mrcnn.evaluation.coco import coco_ap

    gt_entries, predictions = [], []
    with torch.no_grad():
        for image_id in val_set.image_ids:
            image = val_set.load_image(image_id)
            masks, class_ids = val_set.load_mask(image_id)
            out = model([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0])[0]
            gt_entries.append((int(image_id), image.shape[0], image.shape[1], masks, class_ids,
                               np.zeros(len(class_ids), bool)))
            predicted = np.moveaxis(out["masks"][:, 0].numpy() >= 0.5, 0, -1)
            predictions.append((int(image_id), predicted, out["labels"].numpy(), out["scores"].numpy()))
    summary = coco_ap(gt_entries, predictions, [1], max_detections=config.DETECTION_MAX_INSTANCES)
    summary.update(images=len(gt_entries), instances=int(sum(e[3].shape[-1] for e in gt_entries)),
                   detections=int(sum(p[1].shape[-1] for p in predictions)), compiled_ops=compiled)
    return summary, times


# ---------------------------------------------------------------------------------------------- driver
def one_run(framework, seed, steps, threads):
    start = time.perf_counter()
    summary, times = (run_mrcnn if framework == "mrcnn" else run_torchvision)(seed, steps, threads)
    later = times[1:] or times
    return {"framework": framework, "seed": seed, "steps": steps, "mask_AP": round(summary["segm"]["AP"], 4),
            "mask_AP50": round(summary["segm"]["AP50"], 4), "box_AP": round(summary["bbox"]["AP"], 4),
            "detections": summary["detections"], "instances": summary["instances"],
            "seconds_per_step": round(statistics.median(later), 3),
            "wall_s": round(time.perf_counter() - start, 1),
            **({"torchvision_compiled_ops": summary["compiled_ops"]} if "compiled_ops" in summary else {})}


def _stats(values):
    return {"mean": round(statistics.mean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frameworks", nargs="+", choices=("mrcnn", "torchvision"), default=["mrcnn", "torchvision"])
    parser.add_argument("--parallel", action="store_true",
                        help="run each seed's frameworks side by side (their step times then share the cores)")
    parser.add_argument("--one", choices=("mrcnn", "torchvision"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(args.one, args.seeds[0], args.steps, args.threads)))
        return 0
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(args.threads)}
    runs = []

    def start(framework, seed):
        return subprocess.Popen(
            [sys.executable, __file__, "--one", framework, "--seeds", str(seed), "--steps", str(args.steps),
             "--threads", str(args.threads)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(framework, seed, process):
        out, err = process.communicate()
        if process.returncode != 0:
            sys.exit(f"{framework} seed {seed} failed:\n{err[-4000:]}")
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)

    for seed in args.seeds:
        if args.parallel:  # the frameworks side by side, each on its --threads
            for framework, process in [(f, start(f, seed)) for f in args.frameworks]:
                finish(framework, seed, process)
        else:
            for framework in args.frameworks:
                finish(framework, seed, start(framework, seed))
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "threads": args.threads,
                          "OMP_WAIT_POLICY": "PASSIVE", "parallel": args.parallel},
              "data": "stardist DSB2018 tiles: 12 train, 4 held out", "steps": args.steps, "batch": 2,
              "runs": runs}
    for framework in args.frameworks:
        mine = [r for r in runs if r["framework"] == framework]
        report[framework] = {key: _stats([r[key] for r in mine])
                             for key in ("mask_AP", "mask_AP50", "box_AP", "detections", "seconds_per_step")}
    if {"mrcnn", "torchvision"} <= set(args.frameworks) and len(args.seeds) > 1:
        theirs = report["torchvision"]["mask_AP"]
        report["mrcnn_mask_AP_at_least_torchvision_mean_minus_sd"] = \
            report["mrcnn"]["mask_AP"]["mean"] >= theirs["mean"] - theirs["sd"]
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
