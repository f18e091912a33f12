"""Mask R-CNN on nuclei: Matterport's nucleus sample (the 2018 Data Science Bowl layout), plus ``evaluate``.

Usage (from the repository root)::

    # The real default: stardist's annotated DSB2018 image as 16 tiles (samples/nucleus/tiles.py), trained
    # from random weights on the 12 upper tiles, then scored on the 4 held-out ones (mask AP, AP50), with
    # pictures of the detections beside the ground truth
    python samples/nucleus/nucleus.py train
    python samples/nucleus/nucleus.py evaluate

    # Real DSB2018 (stage1_train/<id>/images/<id>.png and <id>/masks/*.png under one folder), as Matterport
    python samples/nucleus/nucleus.py train --dataset=/data/dsb2018 --subset=train --weights=imagenet
    python samples/nucleus/nucleus.py train --dataset=/data/dsb2018 --subset=train --weights=last  # resume
    python samples/nucleus/nucleus.py evaluate --dataset=/data/dsb2018 --subset=val --weights=last
    python samples/nucleus/nucleus.py detect --dataset=/data/dsb2018 --subset=stage1_test --weights=last

``detect`` writes Matterport's Kaggle submission (run-length encoded masks) and one picture per image into
``results/nucleus/submit_<time>/``.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys

ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if ROOT_DIR not in sys.path:
    sys.path.insert(0, ROOT_DIR)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mrcnn import model as modellib  # noqa: E402
from mrcnn import utils  # noqa: E402
from mrcnn.checkpoints import atomic_write_json  # noqa: E402
from mrcnn.cli import UsageError, WeightsChoiceError, cache_dir, initial_weights, parse_setting  # noqa: E402
from mrcnn.config import Config, ConfigError  # noqa: E402
from mrcnn.data.augmentation import imgaug_augmenters  # noqa: E402
from mrcnn.dataset import ImageLoadError, read_image_rgb  # noqa: E402
from mrcnn.evaluation.coco import coco_ap  # noqa: E402
from mrcnn.visualize import draw_instances  # noqa: E402
from samples.nucleus.tiles import VAL_TILE_IDS, StardistMissing, stardist_tiles  # noqa: E402

logger = logging.getLogger(__name__)

COCO_WEIGHTS_PATH = os.path.join(ROOT_DIR, "mask_rcnn_coco.h5")
DEFAULT_LOGS_DIR = os.path.join(ROOT_DIR, "logs")
RESULTS_DIR = os.path.join(ROOT_DIR, "results", "nucleus")

# DSB2018 has no standard train/val split: Matterport's sample holds these stage1_train images out.
VAL_IMAGE_IDS = [
    "0c2550a23b8a0f29a7575de8c61690d3c31bc897dd5ba66caec201d201a278c2",
    "92f31f591929a30e4309ab75185c96ff4314ce0a7ead2ed2c2171897ad1da0c7",
    "1e488c42eb1a54a3e8412b1f12cde530f950f238d71078f2ede6a85a02168e1f",
    "c901794d1a421d52e5734500c0a2a8ca84651fb93b19cec2f411855e70cae339",
    "8e507d58f4c27cd2a82bee79fe27b069befd62a46fdaed20970a95a2ba819c7b",
    "60cb718759bff13f81c4055a7679e81326f78b6a193a2d856546097c949b20ff",
    "da5f98f2b8a64eee735a398de48ed42cd31bf17a6063db46a9e0783ac13cd844",
    "9ebcfaf2322932d464f15b5662cae4d669b2d785b8299556d73fffcae8365d32",
    "1b44d22643830cd4f23c9deadb0bd499fb392fb2cd9526d81547d93077d983df",
    "97126a9791f0c1176e4563ad679a301dac27c59011f579e808bbd6e9f4cd1034",
    "e81c758e1ca177b0942ecad62cf8d321ffc315376135bcbed3df932a6e5b40c0",
    "f29fd9c52e04403cd2c7d43b6fe2479292e53b2f61969d25256d2d2aca7c6a81",
    "0ea221716cf13710214dcd331a61cea48308c3940df1d28cfc7fd817c83714e1",
    "3ab9cab6212fabd723a2c5a1949c2ded19980398b56e6080978e796f45cbbc90",
    "ebc18868864ad075548cc1784f4f9a237bb98335f9645ee727dac8332a3e3716",
    "bb61fc17daf8bdd4e16fdcf50137a8d7762bec486ede9249d92e511fcb693676",
    "e1bcb583985325d0ef5f3ef52957d0371c96d4af767b13e48102bca9d5351a9b",
    "947c0d94c8213ac7aaa41c4efc95d854246550298259cf1bb489654d0e969050",
    "cbca32daaae36a872a11da4eaff65d1068ff3f154eedc9d3fc0c214a4e5d32bd",
    "f4c4db3df4ff0de90f44b027fc2e28c16bf7e5c75ea75b0a9762bbb7ac86e7a3",
    "4193474b2f1c72f735b13633b219d9cabdd43c21d9c2bb4dfc4809f104ba4c06",
    "f73e37957c74f554be132986f38b6f1d75339f636dfe2b681a0cf3f88d2733af",
    "a4c44fc5f5bf213e2be6091ccaed49d8bf039d78f6fbd9c4d7b7428cfcb2eda4",
    "cab4875269f44a701c5e58190a1d2f6fcb577ea79d842522dcab20ccb39b7ad2",
    "8ecdb93582b2d5270457b36651b62776256ade3aaa2d7432ae65c14f07432d49",
]
# Held out by the loader: Matterport's DSB2018 images and the default tiles' last row.
HELD_OUT_IDS = frozenset(VAL_IMAGE_IDS) | frozenset(VAL_TILE_IDS)
SUBSETS = ("train", "val", "stage1_train", "stage1_test", "stage2_test")


# ---------------------------------------------------------------------------------------------- configurations
class NucleusConfig(Config):
    """Matterport's configuration for training on DSB2018: random 512x512 crops of images scaled up 2x."""

    NAME = "nucleus"
    IMAGES_PER_GPU = 6
    NUM_CLASSES = 1 + 1  # background + nucleus
    STEPS_PER_EPOCH = (657 - len(VAL_IMAGE_IDS)) // IMAGES_PER_GPU
    VALIDATION_STEPS = max(1, len(VAL_IMAGE_IDS) // IMAGES_PER_GPU)
    # Two classes: a detection's score is at least 0.5 anyway.
    DETECTION_MIN_CONFIDENCE = 0
    BACKBONE = "resnet50"
    IMAGE_RESIZE_MODE = "crop"
    IMAGE_MIN_DIM = 512
    IMAGE_MAX_DIM = 512
    IMAGE_MIN_SCALE = 2.0
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    POST_NMS_ROIS_TRAINING = 1000
    POST_NMS_ROIS_INFERENCE = 2000
    RPN_NMS_THRESHOLD = 0.9
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    MEAN_PIXEL = np.array([43.53, 39.56, 48.22])
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)
    TRAIN_ROIS_PER_IMAGE = 128
    MAX_GT_INSTANCES = 200
    DETECTION_MAX_INSTANCES = 400


class NucleusInferenceConfig(NucleusConfig):
    """Matterport's inference settings: whole images padded to multiples of 64, one at a time."""

    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    IMAGE_RESIZE_MODE = "pad64"
    RPN_NMS_THRESHOLD = 0.7


class TilesConfig(NucleusConfig):
    """The default: the 12 training tiles of 128x128 (samples/nucleus/tiles.py), from random weights, on a CPU.

    Training from scratch needs what torchvision's Mask R-CNN does without a pretrained backbone: batch norm
    trained (its statistics recomputed after each epoch: precise BN), the ground-truth boxes among the ROIs the
    heads sample (the RPN proposes nothing useful at first) and a warm-up of the learning rate. The tiles are
    used at their size (nuclei of about 24 pixels). Detections are selected as torchvision does
    (DETECTION_EVERY_CLASS).
    """

    NAME = "nucleus_tiles"
    IMAGES_PER_GPU = 2
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    IMAGE_MIN_SCALE = 0
    STEPS_PER_EPOCH = 50
    VALIDATION_STEPS = 2  # the 4 held-out tiles, for the validation losses
    TRAIN_BN = True
    # Keras's batch-norm averages (momentum 0.99, about the last 100 steps) lag weights that move this fast
    # (torchvision's momentum 0.1 averages about the last 10). Recomputed from 20 training batches, a 600-step
    # checkpoint's held-out mask AP went from 0.307 to 0.446; here from 10 batches after each epoch.
    PRECISE_BN_BATCHES = 10
    TRAIN_ADD_GT_PROPOSALS = True
    CHECKPOINTS_TO_KEEP = 2  # each holds the weights and the momentum: 358 MB here
    LEARNING_RATE = 0.01
    LEARNING_RATE_WARMUP_STEPS = 100
    POST_NMS_ROIS_TRAINING = 500
    POST_NMS_ROIS_INFERENCE = 500
    RPN_NMS_THRESHOLD = 0.7
    MAX_GT_INSTANCES = 50
    DETECTION_MAX_INSTANCES = 100
    DETECTION_EVERY_CLASS = True  # torchvision's rule: the lower-scored detections AP counts


class TilesInferenceConfig(TilesConfig):
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


TILES_EPOCHS = 6  # the default's length: 300 steps of 2 tiles (benchmarks/bench_nucleus.py measures this run)


# ---------------------------------------------------------------------------------------------- dataset
class NucleusDataError(ValueError):
    """A DSB2018 folder that does not hold what the layout promises; the message names the file."""


class NucleusDataset(utils.Dataset):
    """DSB2018's layout: ``<dataset_dir>/<stage>/<id>/images/<id>.png`` and ``<id>/masks/*.png`` (one PNG per
    nucleus). Images are RGBA PNGs, loaded as RGB; masks are bool, class ids ones.

    Files in a masks folder that are not PNGs are skipped, counted in ``skipped_files`` and logged; an image
    without masks, an empty masks folder, a mask of another size than its image or an image that is not a PNG
    is a :class:`NucleusDataError` naming the file.
    """

    def __init__(self, class_map=None):
        super().__init__(class_map)
        self.skipped_files = []

    def load_nucleus(self, dataset_dir, subset):
        """Load ``subset`` of ``dataset_dir``: ``train`` (stage1_train without the held-out images), ``val``
        (the held-out images: Matterport's VAL_IMAGE_IDS, the default tiles' last row) or a stage folder."""
        self.add_class("nucleus", 1, "nucleus")
        if subset not in SUBSETS:
            raise NucleusDataError(f"subset {subset!r}: expected one of {', '.join(SUBSETS)}")
        subset_dir = os.path.join(dataset_dir, "stage1_train" if subset in ("train", "val") else subset)
        if not os.path.isdir(subset_dir):
            raise NucleusDataError(
                f"{subset_dir}: no such folder. --dataset is the folder holding DSB2018's stage1_train/ (and "
                f"stage1_test/), unzipped from the 2018 Data Science Bowl's data "
                f"(https://www.kaggle.com/c/data-science-bowl-2018/data)")
        image_ids = sorted(d for d in os.listdir(subset_dir) if os.path.isdir(os.path.join(subset_dir, d)))
        if subset == "val":
            image_ids = [i for i in image_ids if i in HELD_OUT_IDS]
        elif subset == "train":
            image_ids = [i for i in image_ids if i not in HELD_OUT_IDS]
        if not image_ids:
            raise NucleusDataError(f"{subset_dir}: no image folder for subset {subset!r}")
        for image_id in image_ids:
            path = os.path.join(subset_dir, image_id, "images", f"{image_id}.png")
            if not os.path.isfile(path):
                raise NucleusDataError(f"{path}: missing (DSB2018 keeps each image at <id>/images/<id>.png)")
            self.add_image("nucleus", image_id=image_id, path=path)

    def load_image(self, image_id):
        path = self.image_info[image_id]["path"]
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                raise NucleusDataError(f"{path}: not a PNG file")
        return read_image_rgb(path)

    def load_mask(self, image_id):
        """``[H, W, N]`` bool masks (one per PNG of the masks folder, sorted by name) and N ones."""
        info = self.image_info[image_id]
        mask_dir = os.path.join(os.path.dirname(os.path.dirname(info["path"])), "masks")
        if not os.path.isdir(mask_dir):
            raise NucleusDataError(f"{info['path']}: the image has no masks folder ({mask_dir})")
        if "size" not in info:
            with Image.open(info["path"]) as image:
                info["size"] = (image.height, image.width)
        masks = []
        for name in sorted(os.listdir(mask_dir)):
            path = os.path.join(mask_dir, name)
            if not name.lower().endswith(".png"):
                if path not in self.skipped_files:
                    self.skipped_files.append(path)
                    logger.warning("skipping %s: not a PNG mask (%d files skipped so far)", path,
                                   len(self.skipped_files))
                continue
            try:
                with Image.open(path) as image:
                    mask = np.asarray(image.convert("L")) > 0
            except OSError as error:
                raise NucleusDataError(f"{path}: cannot read the mask ({error})") from error
            if mask.shape != info["size"]:
                raise NucleusDataError(f"{path}: mask of {mask.shape[1]}x{mask.shape[0]} pixels for an image "
                                       f"of {info['size'][1]}x{info['size'][0]} ({info['path']})")
            masks.append(mask)
        if not masks:
            raise NucleusDataError(f"{mask_dir}: no mask PNG for image {info['id']}")
        mask = np.stack(masks, axis=-1)
        return mask, np.ones([mask.shape[-1]], dtype=np.int32)

    def image_reference(self, image_id):
        info = self.image_info[image_id]
        return info["id"] if info["source"] == "nucleus" else super().image_reference(image_id)


def load_subset(dataset_dir, subset):
    dataset = NucleusDataset()
    dataset.load_nucleus(dataset_dir, subset)
    dataset.prepare()
    return dataset


# ---------------------------------------------------------------------------------------------- training
def augmentation():
    """Matterport's nucleus augmentation: up to two of flips, a quarter turn, brightness and blur."""
    iaa = imgaug_augmenters()
    return iaa.SomeOf((0, 2), [
        iaa.Fliplr(0.5),
        iaa.Flipud(0.5),
        iaa.OneOf([iaa.Affine(rotate=90), iaa.Affine(rotate=180), iaa.Affine(rotate=270)]),
        iaa.Multiply((0.8, 1.5)),
        iaa.GaussianBlur(sigma=(0.0, 5.0)),
    ])


MATTERPORT_STAGES = [("heads", 20), ("all", 40)]


def train(model, dataset_dir, subset, stages=None, verbose=1):
    """Matterport's training: the heads for 20 epochs, then everything until epoch 40 (``stages``: other
    ``(layers, end_epoch)`` pairs), with :func:`augmentation`, validating on the held-out images."""
    dataset_train = load_subset(dataset_dir, subset)
    dataset_val = load_subset(dataset_dir, "val")
    for layers, end in stages or MATTERPORT_STAGES:
        if end <= model.epoch:
            continue
        print(f"Training {layers!r} until epoch {end}")
        model.train(dataset_train, dataset_val, learning_rate=model.config.LEARNING_RATE, epochs=end,
                    augmentation=augmentation(), layers=layers, verbose=verbose)


# ---------------------------------------------------------------------------------------------- evaluation
def side_by_side(image, gt_masks, result, min_score=0.5, side=384):
    """One picture: the ground truth (left) beside the detections scoring at least ``min_score`` (right), small
    images enlarged (whole pixels) to about ``side`` pixels so the outlines and scores can be read."""
    factor = max(1, side // max(image.shape[:2]))

    def enlarge(array):
        return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)

    boxes = utils.extract_bboxes(gt_masks) * factor
    left = draw_instances(enlarge(image), boxes, enlarge(gt_masks), np.ones(len(boxes), int), ["BG", "nucleus"])
    keep = result["scores"] >= min_score
    right = draw_instances(enlarge(image), result["rois"][keep] * factor, enlarge(result["masks"][:, :, keep]),
                           result["class_ids"][keep], ["BG", "nucleus"], result["scores"][keep])
    gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def evaluate(model, dataset, out_dir=None, progress=True, max_detections=100):
    """COCO mask and box AP (pycocotools) of ``model`` on ``dataset``; with ``out_dir``, also
    ``evaluation.json`` and ``<image id>.png`` pictures of the ground truth beside the detections there.
    Returns ``{"segm": {"AP", "AP50"}, "bbox": {...}, "images": n, "instances": n, "detections": n}``."""
    gt_entries, predictions = [], []
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    for image_id in tqdm(dataset.image_ids, desc="evaluate", unit="image", disable=not progress):
        image = dataset.load_image(image_id)
        masks, class_ids = dataset.load_mask(image_id)
        result = model.detect([image])[0]
        gt_entries.append((int(image_id), image.shape[0], image.shape[1], masks, class_ids,
                           np.zeros(len(class_ids), bool)))
        predictions.append((int(image_id), result["masks"], result["class_ids"], result["scores"]))
        if out_dir:
            picture = side_by_side(image, masks, result)
            Image.fromarray(picture).save(os.path.join(out_dir, f"{dataset.image_info[image_id]['id']}.png"))
    summary = coco_ap(gt_entries, predictions, [1], max_detections=max_detections)
    summary.update(images=len(gt_entries), instances=int(sum(e[3].shape[-1] for e in gt_entries)),
                   detections=int(sum(p[1].shape[-1] for p in predictions)))
    if out_dir:
        atomic_write_json(os.path.join(out_dir, "evaluation.json"), summary)
    return summary


# ---------------------------------------------------------------------------------------------- detection
def rle_encode(mask):
    """A mask ``[H, W]`` as Kaggle's run-length encoding: ``"start length ..."``, pixels numbered from 1 down
    the columns."""
    if mask.ndim != 2:
        raise ValueError(f"rle_encode: expected a [H, W] mask, got shape {mask.shape}")
    flat = np.concatenate([[0], mask.T.flatten().astype(np.int8), [0]])
    runs = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(r) for r in runs)


def rle_decode(rle, shape):
    """The inverse of :func:`rle_encode`: a bool ``shape`` mask."""
    values = np.array(rle.split(), dtype=np.int64).reshape(-1, 2) if rle.strip() else np.zeros((0, 2), np.int64)
    flat = np.zeros(shape[0] * shape[1], dtype=bool)
    for start, length in values:
        flat[start - 1:start - 1 + length] = True
    return flat.reshape(shape[::-1]).T


def mask_to_rle(image_id, mask, scores):
    """Kaggle's submission lines for one image: ``"<id>, <rle>"`` per instance, the higher score kept where two
    masks overlap (Kaggle refused overlapping masks)."""
    if mask.ndim != 3:
        raise ValueError(f"mask_to_rle: expected [H, W, N] masks, got shape {mask.shape}")
    if mask.shape[-1] == 0:
        return f"{image_id},"
    labels = _label_image(mask, scores)
    lines = [f"{image_id}, {rle_encode(labels == k)}" for k in range(1, labels.max() + 1) if (labels == k).any()]
    return "\n".join(lines) if lines else f"{image_id},"


def _label_image(mask, scores):
    """``[H, W]`` int labels: instance k+1 (in order of falling score) where its mask is, the best score on top."""
    labels = np.zeros(mask.shape[:2], np.int32)
    for rank, index in enumerate(np.argsort(scores)[::-1]):
        labels[(labels == 0) & mask[:, :, index]] = rank + 1
    return labels


def detect(model, dataset_dir, subset, results_dir=RESULTS_DIR, progress=True):
    """Matterport's detect: a Kaggle ``submit.csv`` (run-length encoded masks) and one picture per image in
    ``<results_dir>/submit_<time>/``; returns that folder."""
    submit_dir = os.path.join(results_dir, f"submit_{datetime.datetime.now():%Y%m%dT%H%M%S}")
    os.makedirs(submit_dir, exist_ok=True)
    dataset = load_subset(dataset_dir, subset)
    lines = []
    for image_id in tqdm(dataset.image_ids, desc="detect", unit="image", disable=not progress):
        image = dataset.load_image(image_id)
        r = model.detect([image], verbose=0)[0]
        source_id = dataset.image_info[image_id]["id"]
        lines.append(mask_to_rle(source_id, r["masks"], r["scores"]))
        picture = draw_instances(image, r["rois"], r["masks"], r["class_ids"], dataset.class_names, r["scores"])
        Image.fromarray(picture).save(os.path.join(submit_dir, f"{source_id}.png"))
    with open(os.path.join(submit_dir, "submit.csv"), "w") as f:
        f.write("ImageId,EncodedPixels\n" + "\n".join(lines) + "\n")
    print("Saved to", submit_dir)
    return submit_dir


# ---------------------------------------------------------------------------------------------- command line
def build_parser():
    parser = argparse.ArgumentParser(prog="nucleus.py", description="Mask R-CNN for nuclei counting and "
                                     "segmentation (Matterport's nucleus sample).")
    parser.add_argument("command", choices=("train", "detect", "evaluate"), metavar="<command>",
                        help="train, detect or evaluate")
    parser.add_argument("--dataset", default=None, metavar="/path/to/dataset/",
                        help="root of the DSB2018 data (holding stage1_train/); omitted: stardist's annotated "
                             "DSB2018 image as 16 tiles, written once into $MRCNN_CACHE or ~/.cache/mrcnn")
    parser.add_argument("--weights", default=None, metavar="/path/to/weights.h5",
                        help="coco | imagenet | last | none | <path>; default: none to train on the default "
                             "tiles, imagenet to train on --dataset, last to detect or evaluate")
    parser.add_argument("--logs", default=DEFAULT_LOGS_DIR, metavar="/path/to/logs/",
                        help="logs and checkpoints directory (default=logs/)")
    parser.add_argument("--subset", default=None, metavar="Dataset sub-directory",
                        help="subset to train on (default train) or to detect on / evaluate (default val)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"train: the last epoch (default: {TILES_EPOCHS} of all layers on the default "
                             f"tiles; Matterport's 20 of heads then 40 of all layers on --dataset)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a Config setting, e.g. --set STEPS_PER_EPOCH=10 (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights init, sampling and batches")
    parser.add_argument("--no-evaluate", action="store_true", help="train: skip the evaluation after training")
    return parser


def configs(args):
    """The (training, inference) configurations the arguments ask for, ``--set`` applied to both."""
    overrides = dict(parse_setting(text) for text in args.set)
    if args.dataset:
        return NucleusConfig(**overrides), NucleusInferenceConfig(**overrides)
    return TilesConfig(**overrides), TilesInferenceConfig(**overrides)


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        dataset_dir = args.dataset or stardist_tiles(cache_dir())
        train_config, inference_config = configs(args)
        if args.command == "train":
            model = modellib.MaskRCNN("training", train_config, args.logs, seed=args.seed)
            weights = args.weights or ("imagenet" if args.dataset else "none")
            path = initial_weights(model, weights)
            print(f"Weights: {path or 'random'}; data: {dataset_dir}")
            if args.dataset:
                stages = [(layers, round(end * args.epochs / 40)) for layers, end in MATTERPORT_STAGES] \
                    if args.epochs else None
            else:
                stages = [("all", args.epochs or TILES_EPOCHS)]
            train(model, dataset_dir, args.subset or "train", stages=stages)
            if args.no_evaluate:
                return 0
            args.weights = model.find_last()
        model = modellib.MaskRCNN("inference", inference_config, args.logs)
        path = initial_weights(model, args.weights or "last")
        # after train, --subset named what it trained on: the evaluation is of the held-out images
        subset = "val" if args.command == "train" else args.subset or "val"
        if args.command == "detect":
            detect(model, dataset_dir, subset)
            return 0
        dataset = load_subset(dataset_dir, subset)
        out_dir = os.path.join(os.path.dirname(path) if path else args.logs, f"evaluation_{subset}")
        summary = evaluate(model, dataset, out_dir, max_detections=inference_config.DETECTION_MAX_INSTANCES)
        print(f"Held-out {subset} ({summary['images']} images, {summary['instances']} nuclei, "
              f"{summary['detections']} detections): mask AP {summary['segm']['AP']:.3f} AP50 "
              f"{summary['segm']['AP50']:.3f}; box AP {summary['bbox']['AP']:.3f} AP50 "
              f"{summary['bbox']['AP50']:.3f}")
        print(f"Pictures (ground truth | detections) and evaluation.json in {out_dir}")
        return 0
    except (StardistMissing, NucleusDataError, ImageLoadError, WeightsChoiceError, UsageError, ConfigError) as error:
        print(f"nucleus.py {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
