"""Mask R-CNN on MS COCO: Matterport's ``samples/coco/coco.py``, on this package.

The same names (``CocoConfig``, ``CocoDataset.load_coco``, ``build_coco_results``, ``evaluate_coco``) and the
same command line, run from the repository root or from this folder::

    # Train a new model starting from pre-trained COCO weights
    python samples/coco/coco.py train --dataset=/path/to/coco/ --model=coco

    # Train a new model starting from ImageNet weights, downloading COCO 2014 first
    python samples/coco/coco.py train --dataset=/path/to/coco/ --model=imagenet --download=True

    # Continue training a model that you had trained earlier, or the last one trained
    python samples/coco/coco.py train --dataset=/path/to/coco/ --model=/path/to/weights.h5
    python samples/coco/coco.py train --dataset=/path/to/coco/ --model=last

    # Run COCO evaluation (bbox AP, pycocotools) on the last model you trained, 500 images
    python samples/coco/coco.py evaluate --dataset=/path/to/coco/ --model=last --limit=500

The data layout is COCO's: ``<dataset>/annotations/instances_<subset><year>.json`` and the images in
``<dataset>/<subset><year>/``; ``minival`` and ``valminusminival`` (2014) take their images from ``val2014``.

Beyond Matterport's options: ``--model=none`` (random initialisation), ``--schedule`` (Matterport's three stages
by default), ``--set KEY=VALUE`` (any Config attribute) and ``--eval-type=bbox|segm``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import zipfile

ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if ROOT_DIR not in sys.path:
    sys.path.insert(0, ROOT_DIR)  # `import coco` from this folder, as Matterport's notebooks do

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from pycocotools import mask as maskUtils  # noqa: E402, N812  (Matterport's name)
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mrcnn import cli, utils  # noqa: E402  (cli: weights choice and staged training, shared by the samples)
from mrcnn import model as modellib  # noqa: E402
from mrcnn.cli import UsageError, parse_setting  # noqa: E402
from mrcnn.config import Config, ConfigError  # noqa: E402
from mrcnn.dataset import ImageLoadError  # noqa: E402
from mrcnn.download import WeightsDownloadError, download_file  # noqa: E402
from mrcnn.weights import WeightsFileError, WeightsMismatchError  # noqa: E402

COCO_MODEL_PATH = cli.COCO_WEIGHTS_PATH
DEFAULT_LOGS_DIR = os.path.join(ROOT_DIR, "logs")
DEFAULT_DATASET_YEAR = "2014"
VAL_SUBSETS = {"2014": "minival", "2017": "val"}  # what train validates on and evaluate scores, per year
# Matterport coco.py's three stages: heads to epoch 40, ResNet stage 4 and up to 120, all at LR/10 to 160.
DEFAULT_SCHEDULE = cli.DEFAULT_SCHEDULE
COCO_IMAGES_URL = "http://images.cocodataset.org/zips/{}.zip"
COCO_ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval{}.zip"
# Matterport's minival / valminusminival 2014 splits (annotations only; the images are val2014's).
MINIVAL_URLS = {
    "minival": "https://dl.dropboxusercontent.com/s/o43o90bna78omob/instances_minival2014.json.zip?dl=0",
    "valminusminival": "https://dl.dropboxusercontent.com/s/s3tw5zcg7395368/instances_valminusminival2014.json.zip?dl=0",
}


class CocoDownloadError(RuntimeError):
    """COCO could not be downloaded; the message names each file, its address and where it goes."""


class CocoConfig(Config):
    """Configuration for training on MS COCO (Matterport's values)."""

    NAME = "coco"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 80  # background + COCO's 80 classes


class CocoDataset(utils.Dataset):
    def load_coco(self, dataset_dir, subset, year=DEFAULT_DATASET_YEAR, class_ids=None, class_map=None,
                  return_coco=False, auto_download=False):
        """Load a subset of COCO.

        dataset_dir: the COCO root; subset: train, val, minival or valminusminival (2014); year: 2014 or
        2017; class_ids: only images holding these category ids, and only their annotations (default all);
        class_map: accepted for Matterport's signature, unused there too; return_coco: also return the
        ``pycocotools.coco.COCO`` object (what :func:`evaluate_coco` needs); auto_download: fetch the images
        and annotations first when they are missing.
        """
        if auto_download:
            self.auto_download(dataset_dir, subset, year)
        annotations = os.path.join(dataset_dir, "annotations", f"instances_{subset}{year}.json")
        if not os.path.isfile(annotations):
            raise FileNotFoundError(f"no COCO annotations at {annotations}: expected <dataset>/annotations/"
                                    f"instances_<subset><year>.json (or pass auto_download=True / "
                                    f"--download=True to fetch COCO)")
        coco = COCO(annotations)
        if subset in ("minival", "valminusminival"):
            subset = "val"
        image_dir = os.path.join(dataset_dir, f"{subset}{year}")

        if not class_ids:
            class_ids = sorted(coco.getCatIds())
        image_ids = sorted({i for class_id in class_ids for i in coco.getImgIds(catIds=[class_id])})
        for class_id in class_ids:
            self.add_class("coco", class_id, coco.loadCats(class_id)[0]["name"])
        for i in image_ids:
            self.add_image("coco", image_id=i, path=os.path.join(image_dir, coco.imgs[i]["file_name"]),
                           width=coco.imgs[i]["width"], height=coco.imgs[i]["height"],
                           annotations=coco.loadAnns(coco.getAnnIds(imgIds=[i], catIds=class_ids, iscrowd=None)))
        if return_coco:
            return coco

    def auto_download(self, dataDir, dataType, dataYear):  # noqa: N803  (Matterport's argument names)
        """Download the images and annotations of ``dataType`` + ``dataYear`` into ``dataDir`` unless there.

        Offline (or on any download failure) raises :class:`CocoDownloadError` naming what to fetch by hand
        and where to put it. Downloads go to a temporary file renamed when complete.
        """
        if dataType in ("minival", "valminusminival"):
            image_folder, image_zip = f"val{dataYear}", f"val{dataYear}"
        else:
            image_folder, image_zip = f"{dataType}{dataYear}", f"{dataType}{dataYear}"
        image_dir = os.path.join(dataDir, image_folder)
        annotation_dir = os.path.join(dataDir, "annotations")
        annotation_file = os.path.join(annotation_dir, f"instances_{dataType}{dataYear}.json")
        if dataType in MINIVAL_URLS:
            annotation_url, annotation_zip = MINIVAL_URLS[dataType], f"instances_{dataType}{dataYear}.json.zip"
            unzip_to = annotation_dir
        else:
            annotation_url = COCO_ANNOTATIONS_URL.format(dataYear)
            annotation_zip = f"annotations_trainval{dataYear}.zip"
            unzip_to = dataDir  # the archive holds annotations/
        wanted = []
        if not os.path.isdir(image_dir) or not os.listdir(image_dir):
            wanted.append((COCO_IMAGES_URL.format(image_zip), os.path.join(dataDir, image_zip + ".zip"), dataDir,
                           image_dir))
        if not os.path.isfile(annotation_file):
            wanted.append((annotation_url, os.path.join(dataDir, annotation_zip), unzip_to, annotation_file))
        for url, zip_path, target, result in wanted:
            print(f"Downloading {url} to {zip_path} ...")
            try:
                download_file(url, zip_path, what=os.path.basename(zip_path), timeout=60)
            except WeightsDownloadError as error:
                raise CocoDownloadError(
                    f"Could not download COCO {dataType}{dataYear} ({error.__cause__ or error}). On a machine with "
                    f"network access, download {url} and unzip it into {target} (giving {result}); then run "
                    f"again without --download.") from None
            with zipfile.ZipFile(zip_path) as archive:
                archive.extractall(target)
            os.remove(zip_path)
            print(f"... unzipped into {target}")

    def load_mask(self, image_id):
        """Instance masks ``[H, W, N]`` bool and class ids ``[N]`` int32; crowd annotations get negative ids
        (excluded from training targets, as in Matterport)."""
        image_info = self.image_info[image_id]
        if image_info["source"] != "coco":
            return super().load_mask(image_id)
        instance_masks, class_ids = [], []
        height, width = image_info["height"], image_info["width"]
        for annotation in image_info["annotations"]:
            class_id = self.map_source_class_id(f"coco.{annotation['category_id']}")
            if not class_id:
                continue
            m = self.annToMask(annotation, height, width)
            if m.max() < 1:  # smaller than a pixel: skipped
                continue
            if annotation["iscrowd"]:
                class_id *= -1
                if m.shape != (height, width):  # a crowd RLE of another size covers the image
                    m = np.ones([height, width], dtype=bool)
            instance_masks.append(m)
            class_ids.append(class_id)
        if not class_ids:
            return super().load_mask(image_id)
        return np.stack(instance_masks, axis=2).astype(bool), np.array(class_ids, dtype=np.int32)

    def image_reference(self, image_id):
        """The image's page in the COCO explorer."""
        info = self.image_info[image_id]
        if info["source"] == "coco":
            return f"http://cocodataset.org/#explore?id={info['id']}"
        return super().image_reference(image_id)

    def annToRLE(self, ann, height, width):  # noqa: N802  (Matterport's name)
        """An annotation's polygons, uncompressed RLE or RLE as one compressed RLE."""
        segm = ann["segmentation"]
        if isinstance(segm, list):  # polygons: one object may have several parts
            return maskUtils.merge(maskUtils.frPyObjects(segm, height, width))
        if isinstance(segm["counts"], list):  # uncompressed RLE
            return maskUtils.frPyObjects(segm, height, width)
        return segm

    def annToMask(self, ann, height, width):  # noqa: N802
        """An annotation as a binary ``[height, width]`` uint8 mask."""
        return maskUtils.decode(self.annToRLE(ann, height, width))


def build_coco_results(dataset, image_ids, rois, class_ids, scores, masks):
    """Detections of the COCO images ``image_ids`` (COCO's ids) as COCO result dicts: bbox ``[x, y, w, h]``,
    COCO category ids, score, and the mask as compressed RLE."""
    if rois is None:
        return []
    results = []
    for image_id in image_ids:
        for i in range(rois.shape[0]):
            class_id = class_ids[i]
            y1, x1, y2, x2 = (float(v) for v in rois[i])
            results.append({
                "image_id": image_id,
                "category_id": dataset.get_source_class_id(class_id, "coco"),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(scores[i]),
                "segmentation": maskUtils.encode(np.asfortranarray(masks[:, :, i].astype(np.uint8))),
            })
    return results


def evaluate_coco(model, dataset, coco, eval_type="bbox", limit=0, image_ids=None):
    """Detect on ``dataset`` (all images, or ``image_ids``, the first ``limit``) and print COCO's AP table.

    eval_type: "bbox" or "segm". Returns the ``COCOeval`` object (Matterport's returned nothing), whose
    ``stats[0]`` is AP@[.5:.95] and ``stats[1]`` AP@.5.
    """
    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    if limit:
        image_ids = image_ids[:limit]
    coco_image_ids = [dataset.image_info[i]["id"] for i in image_ids]
    t_prediction, t_start, results = 0.0, time.time(), []
    for i, image_id in enumerate(tqdm(image_ids, desc="COCO evaluation", unit="image")):
        image = dataset.load_image(image_id)
        t = time.time()
        r = model.detect([image], verbose=0)[0]
        t_prediction += time.time() - t
        results.extend(build_coco_results(dataset, coco_image_ids[i:i + 1], r["rois"], r["class_ids"],
                                          r["scores"], r["masks"].astype(np.uint8)))
    if not results:
        print(f"No detections on {len(image_ids)} images: AP is 0")
    coco_results = coco.loadRes(results) if results else COCO()
    if not results:
        coco_results.dataset = {"images": coco.dataset["images"], "categories": coco.dataset["categories"],
                                "annotations": []}
        coco_results.createIndex()
    coco_eval = COCOeval(coco, coco_results, eval_type)
    coco_eval.params.imgIds = coco_image_ids
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    print(f"Prediction time: {t_prediction:.1f} s. Average {t_prediction / max(1, len(image_ids)):.2f} s/image")
    print(f"Total time: {time.time() - t_start:.1f} s")
    return coco_eval


# ---------------------------------------------------------------------------------------------- command line
def build_parser():
    parser = argparse.ArgumentParser(description="Train Mask R-CNN on MS COCO.")
    parser.add_argument("command", metavar="<command>", choices=("train", "evaluate"),
                        help="'train' or 'evaluate' on MS COCO")
    parser.add_argument("--dataset", required=True, metavar="/path/to/coco/", help="Directory of the MS-COCO dataset")
    parser.add_argument("--year", default=DEFAULT_DATASET_YEAR, metavar="<year>",
                        help=f"Year of the MS-COCO dataset (2014 or 2017) (default={DEFAULT_DATASET_YEAR})")
    parser.add_argument("--model", required=True, metavar="/path/to/weights.h5",
                        help="Path to weights .h5 file or 'coco', 'imagenet', 'last' or 'none'")
    parser.add_argument("--logs", default=DEFAULT_LOGS_DIR, metavar="/path/to/logs/",
                        help="Logs and checkpoints directory (default=logs/)")
    parser.add_argument("--limit", default=500, type=int, metavar="<image count>",
                        help="Images to use for evaluation (default=500)")
    parser.add_argument("--download", default=False, type=_boolean, metavar="<True|False>",
                        help="Automatically download and unzip MS-COCO files (default=False)")
    parser.add_argument("--schedule", default=DEFAULT_SCHEDULE, metavar="layers:end[:lr_factor],...",
                        help=f"training stages (default={DEFAULT_SCHEDULE}, Matterport's)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a Config attribute")
    parser.add_argument("--eval-type", default="bbox", choices=("bbox", "segm"), help="COCO evaluation type")
    return parser


def _boolean(text):
    if str(text).lower() in ("true", "1", "yes"):
        return True
    if str(text).lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print("Command: ", args.command)
    print("Model: ", args.model)
    print("Dataset: ", args.dataset)
    print("Year: ", args.year)
    print("Logs: ", args.logs)
    print("Auto Download: ", args.download)
    try:
        if args.year not in VAL_SUBSETS:
            raise UsageError(f"--year={args.year}: expected 2014 or 2017")
        overrides = dict(parse_setting(item) for item in args.set or ())
        if args.command == "train":
            run_train(args, CocoConfig(**overrides))
        else:
            run_evaluate(args, CocoConfig(**{"GPU_COUNT": 1, "IMAGES_PER_GPU": 1, "DETECTION_MIN_CONFIDENCE": 0,
                                              **overrides}))
    except (UsageError, CocoDownloadError, cli.WeightsChoiceError, cli.ScheduleError, ConfigError,
            ImageLoadError, FileNotFoundError) as error:
        print(f"\ncoco.py {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


def load_model_weights(model, choice):
    """``--model``: coco, imagenet, last, none or a path. Every layer is loaded by name, heads included
    (the class count is COCO's), as Matterport's coco.py does."""
    try:
        if choice.lower() == "coco":
            path = cli.coco_weights_path(flag="--model")
        elif choice.lower() == "imagenet":
            path = model.get_imagenet_weights()
        elif choice.lower() == "last":
            path = model.find_last()
        elif choice.lower() == "none":
            path = None
        else:
            path = os.path.abspath(os.path.expanduser(choice))
            if not os.path.isfile(path):
                raise UsageError(f"--model={choice}: no such file {path}; expected coco, imagenet, last, none "
                                 f"or the path of a .h5 weights file")
        print("Loading weights ", path or "(none: random initialisation)")
        if path:
            model.load_weights(path, by_name=True)
    except (WeightsDownloadError, WeightsFileError, WeightsMismatchError) as error:
        raise UsageError(f"--model={choice}: {error}") from None
    return path


def _model(mode, config, args):
    config.display()
    model = modellib.MaskRCNN(mode=mode, config=config, model_dir=args.logs)
    load_model_weights(model, args.model)
    return model


def run_train(args, config):
    model = _model("training", config, args)
    # Training on train + valminusminival (2014) or train (2017); validating on minival (2014) or val (2017).
    dataset_train = CocoDataset()
    dataset_train.load_coco(args.dataset, "train", year=args.year, auto_download=args.download)
    if args.year == "2014":
        dataset_train.load_coco(args.dataset, "valminusminival", year=args.year, auto_download=args.download)
    dataset_train.prepare()
    dataset_val = CocoDataset()
    dataset_val.load_coco(args.dataset, VAL_SUBSETS[args.year], year=args.year, auto_download=args.download)
    dataset_val.prepare()
    from mrcnn.data.augmentation import imgaug_augmenters

    iaa = imgaug_augmenters()  # imgaug 0.4 on NumPy 2

    stages = cli.parse_schedule(args.schedule, learning_rate=config.LEARNING_RATE)
    if cli.warmup_steps(args.schedule):  # the model reads it from its config when it trains
        config.LEARNING_RATE_WARMUP_STEPS = cli.warmup_steps(args.schedule)
    cli.train_stages(model, dataset_train, dataset_val, stages, augmentation=iaa.Fliplr(0.5))
    return model


def run_evaluate(args, config):
    model = _model("inference", config, args)
    dataset_val = CocoDataset()
    coco = dataset_val.load_coco(args.dataset, VAL_SUBSETS[args.year], year=args.year, return_coco=True,
                                 auto_download=args.download)
    dataset_val.prepare()
    print(f"Running COCO evaluation on {args.limit or len(dataset_val.image_ids)} images.")
    return evaluate_coco(model, dataset_val, coco, args.eval_type, limit=int(args.limit))


if __name__ == "__main__":
    sys.exit(main())
