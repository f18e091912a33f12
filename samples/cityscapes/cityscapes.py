"""Mask R-CNN on Cityscapes: train, evaluate with the official scripts, detect.

Usage (from the repository root)::

    # The main job: the synthetic set (generated once), random weights, brief training, evaluation and
    # pictures, about 10 minutes on 2 CPU cores
    python samples/cityscapes/cityscapes.py train

    # Real Cityscapes (leftImg8bit/ and gtFine/ under one folder), from Matterport's COCO weights
    python samples/cityscapes/cityscapes.py train --dataset=/data/cityscapes --weights=coco
    python samples/cityscapes/cityscapes.py train --dataset=/data/cityscapes --weights=last   # resume
    python samples/cityscapes/cityscapes.py evaluate --dataset=/data/cityscapes --weights=last
    python samples/cityscapes/cityscapes.py detect --weights=last --image=frames/ --output=out/

Training follows Matterport's coco.py schedule (heads, then ResNet stage 4 and up, then everything at a
tenth of the learning rate); ``--epochs`` rescales it, ``--schedule`` replaces it. From random weights
(``--weights=none``) the default schedule trains all layers from the start.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if ROOT_DIR not in sys.path:
    sys.path.insert(0, ROOT_DIR)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from attention.cost import StepTimer  # noqa: E402
from mrcnn import distribute  # noqa: E402
from mrcnn import model as modellib  # noqa: E402
from mrcnn.config import ConfigError  # noqa: E402
from mrcnn.dataset import ImageLoadError  # noqa: E402
from mrcnn.distribute import DistributeError  # noqa: E402
from samples.cityscapes import jobs  # noqa: E402
from samples.cityscapes.config import (  # noqa: E402
    CityscapesConfig,
    SyntheticCityscapesConfig,
    inference_config,
)
from samples.cityscapes.dataset import BENCHMARK_CLASSES, INSTANCE_CLASSES, CityscapesDataError  # noqa: E402

DEFAULT_LOGS_DIR = os.path.join(ROOT_DIR, "logs")
SYNTHETIC_EPOCHS = 10  # the main job's default length on the synthetic set


def build_parser():
    parser = argparse.ArgumentParser(
        prog="cityscapes.py", description="Train, evaluate and run Mask R-CNN on Cityscapes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("command", choices=("train", "evaluate", "detect"))
    parser.add_argument("--dataset", default=None,
                        help="Cityscapes root (holding leftImg8bit/ and gtFine/); omitted: the synthetic set, "
                             "generated once into $MRCNN_CACHE or ~/.cache/mrcnn")
    parser.add_argument("--weights", default=None,
                        help="coco | imagenet | last | none | <path to .h5>; default: none to train on the "
                             "synthetic set, coco to train on --dataset, last to evaluate or detect")
    parser.add_argument("--logs", default=DEFAULT_LOGS_DIR, help="folder of the runs' logs and checkpoints")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images of each subset")
    parser.add_argument("--epochs", type=int, default=None,
                        help="total epochs; the schedule's stages are rescaled to end there")
    parser.add_argument("--schedule", default=None,
                        help=f"stages layers:end_epoch[:lr_factor], comma-separated (default "
                             f"{jobs.DEFAULT_SCHEDULE!r}; 'all:<epochs>' with --weights=none)")
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch (Config.STEPS_PER_EPOCH)")
    parser.add_argument("--classes", type=int, choices=(8, 10), default=8,
                        help="8 benchmark classes, or all 10 instance classes (adds caravan, trailer)")
    parser.add_argument("--attention", action="store_true",
                        help="local self-attention instead of the 3x3 convolutions of ResNet stages 4 and 5 "
                             "(Config.ATTENTION_DEFAULT_STAGES); checkpoints of such runs need the flag too")
    parser.add_argument("--subset", default="val", help="subset to evaluate")
    parser.add_argument("--image", default=None, help="detect: an image file or a folder of images; "
                                                      "default: the first frames of --subset")
    parser.add_argument("--output", default=None, help="detect: folder for the overlay PNGs "
                                                       "(default: <run log dir>/detections)")
    parser.add_argument("--min-score", type=float, default=0.5, help="detect: lowest score drawn")
    parser.add_argument("--skip-bad", action="store_true",
                        help="log and count unreadable or inconsistent frames instead of stopping")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights init, sampling and batches")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="train: skip the evaluation and pictures after training")
    parser.add_argument("--gpus", type=int, default=None,
                        help="train: GPUs per machine (Config.GPU_COUNT); N > 1 mirrors the model over the first "
                             "N GPUs, global batch IMAGES_PER_GPU x N. With TF_CONFIG set, every machine of the "
                             "cluster trains (MultiWorkerMirroredStrategy), only the chief writes")
    parser.add_argument("--precision", choices=("float32", "mixed_float16", "mixed_bfloat16"), default="float32",
                        help="Config.MIXED_PRECISION: convolutions and heads in 16 bits, box math and losses "
                             "in float32")
    parser.add_argument("--xla", choices=("auto", "on", "off"), default="auto",
                        help="Config.JIT_COMPILE: auto is Keras's choice (on with a GPU, off on CPU-only "
                             "machines and under tf.distribute)")
    return parser


class UsageError(RuntimeError):
    """A problem with the command line or the environment that a paragraph explains (no traceback)."""


def make_config(args):
    synthetic = args.dataset is None
    classes = BENCHMARK_CLASSES if args.classes == 8 else INSTANCE_CLASSES
    overrides = {"CLASSES": classes, "NUM_CLASSES": 1 + len(classes)}
    if args.steps:
        overrides["STEPS_PER_EPOCH"] = args.steps
    if getattr(args, "gpus", None):
        overrides["GPU_COUNT"] = args.gpus
    if getattr(args, "precision", "float32") != "float32":
        overrides["MIXED_PRECISION"] = args.precision
    overrides["JIT_COMPILE"] = {"auto": None, "on": True, "off": False}[getattr(args, "xla", "auto")]
    if args.attention:
        base = SyntheticCityscapesConfig if synthetic else CityscapesConfig
        overrides["ATTENTION_STAGES"] = tuple(base.ATTENTION_DEFAULT_STAGES)
        overrides["NAME"] = base.NAME + "_attention"  # its own runs: --weights=last never mixes the two
    return (SyntheticCityscapesConfig if synthetic else CityscapesConfig)(**overrides)


def dataset_dir(args):
    if args.dataset is None:
        return jobs.synthetic_root()
    if not os.path.isdir(args.dataset):
        raise UsageError(f"--dataset={args.dataset}: no such folder; expected the Cityscapes root holding "
                         f"leftImg8bit/ and gtFine/")
    return args.dataset


def run_train(args):
    config = make_config(args)
    weights = args.weights or ("none" if args.dataset is None else "coco")
    # From random weights a frozen backbone learns nothing: train everything from the start.
    schedule = args.schedule or (jobs.DEFAULT_SCHEDULE if weights.lower() != "none" else "all:160")
    epochs = args.epochs or (SYNTHETIC_EPOCHS if args.dataset is None else None)
    stages = jobs.parse_schedule(schedule, epochs, config.LEARNING_RATE)
    root = dataset_dir(args)
    train_set = jobs.load_subset(root, "train", config.CLASSES, args.skip_bad, args.limit)
    val_set = jobs.load_subset(root, "val", config.CLASSES, args.skip_bad, args.limit)
    print(f"Dataset {root}: {len(train_set.image_ids)} train, {len(val_set.image_ids)} val images")
    config.display()
    model = modellib.MaskRCNN("training", config, args.logs, seed=args.seed)
    path = jobs.initial_weights(model, weights)
    print(f"Starting weights: {path or 'random initialisation'}")
    import imgaug.augmenters as iaa  # after mrcnn: its numpy-2 aliases are in place

    timer = StepTimer()
    jobs.train_stages(model, train_set, val_set, stages, augmentation=iaa.Fliplr(0.5), custom_callbacks=[timer])
    if not distribute.is_chief():
        print("Trained as a non-chief worker: the chief wrote the checkpoints and logs")
        return model
    summary_path = os.path.join(model.log_dir, "run_summary.json")
    jobs.write_run_summary(model, timer, summary_path)
    print(f"Saved {summary_path}")
    for subset in (train_set, val_set):
        if subset.skipped:
            print(f"Skipped {len(subset.skipped)} bad frames (see the log above)")
    if args.no_evaluate:
        return model
    checkpoint = model.find_last()
    inference = inference_model(args, config, checkpoint)
    run_evaluate(args, model=inference)
    run_detect(args, model=inference)
    return model


def inference_model(args, config=None, checkpoint=None):
    config = inference_config(config or make_config(args))
    model = modellib.MaskRCNN("inference", config, args.logs)
    path = jobs.initial_weights(model, checkpoint or args.weights or "last")
    if path is None:
        print("Warning: detecting with random weights (--weights=none)")
    return model


def run_evaluate(args, model=None):
    model = model or inference_model(args)
    dataset = jobs.load_subset(dataset_dir(args), args.subset, model.config.CLASSES, args.skip_bad, args.limit)
    out_dir = os.path.join(model.log_dir, f"evaluation_{args.subset}")
    summary = jobs.evaluate(model, dataset, out_dir)
    print(jobs.format_summary(summary))
    if dataset.skipped:
        print(f"Skipped {len(dataset.skipped)} bad frames: {', '.join(p for p, _ in dataset.skipped)}")
    print(f"Saved {os.path.join(out_dir, 'evaluation.json')}")
    return summary


def run_detect(args, model=None):
    model = model or inference_model(args)
    if args.image:
        images = jobs.read_images(args.image)
    else:
        dataset = jobs.load_subset(dataset_dir(args), args.subset, model.config.CLASSES, args.skip_bad,
                                   limit=args.limit or 2)
        images = [(dataset.image_info[i]["id"], dataset.load_image(i)) for i in dataset.image_ids]
    class_names = ["BG"] + list(model.config.CLASSES)
    out_dir = args.output or os.path.join(model.log_dir, "detections")
    paths = jobs.detect_images(model, images, out_dir, class_names, min_score=args.min_score)
    print("Wrote " + ", ".join(paths))
    return paths


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        {"train": run_train, "evaluate": run_evaluate, "detect": run_detect}[args.command](args)
    except (UsageError, DistributeError, jobs.WeightsChoiceError, jobs.ScheduleError, CityscapesDataError, ConfigError,
            ImageLoadError, FileNotFoundError) as error:
        print(f"\ncityscapes.py {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
