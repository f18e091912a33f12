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
    python samples/cityscapes/cityscapes.py export --weights=last --format=saved_model --output=served/

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

import keras  # noqa: E402

from mrcnn import distribute  # noqa: E402
from mrcnn import model as modellib  # noqa: E402
from mrcnn.checkpoints import TrainingDiverged  # noqa: E402
from mrcnn.cli import UsageError, parse_setting  # noqa: E402
from mrcnn.config import ConfigError  # noqa: E402
from mrcnn.costs import StepTimer  # noqa: E402
from mrcnn.dataset import ImageLoadError  # noqa: E402
from mrcnn.distribute import DistributeError  # noqa: E402
from samples.cityscapes import jobs  # noqa: E402
from samples.cityscapes.config import (  # noqa: E402
    CityscapesConfig,
    SyntheticCityscapesConfig,
    inference_config,
)
from samples.cityscapes.dataset import (  # noqa: E402, F401  (Matterport's samples keep their Dataset here)
    BENCHMARK_CLASSES,
    INSTANCE_CLASSES,
    CityscapesDataError,
    CityscapesDataset,
)

DEFAULT_LOGS_DIR = os.path.join(ROOT_DIR, "logs")
SYNTHETIC_EPOCHS = 10  # the main job's default length on the synthetic set
CONFIGS = {"synthetic": SyntheticCityscapesConfig, "cityscapes": CityscapesConfig}
# What a run records in <run>/run.json and train --weights=last takes back (unless given again).
RUN_SETTINGS = ("dataset", "config", "set", "classes", "attention", "steps", "limit", "skip_bad", "schedule",
                "epochs", "seed", "deterministic", "precision", "xla", "gpus")


class _HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" where the help text does not already say what the default is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="cityscapes.py", description="Train, evaluate and run Mask R-CNN on Cityscapes.",
        formatter_class=_HelpFormatter)
    parser.add_argument("command", choices=("train", "evaluate", "detect", "export"))
    parser.add_argument("--dataset", default=None,
                        help="Cityscapes root (holding leftImg8bit/ and gtFine/); omitted: the synthetic set, "
                             "generated once into $MRCNN_CACHE or ~/.cache/mrcnn")
    parser.add_argument("--weights", default=None,
                        help="coco | imagenet | last | none | <path to .h5>; default: none to train on the "
                             "synthetic set, coco to train on --dataset, last to evaluate or detect. "
                             "train --weights=last resumes the last run with the settings it recorded")
    parser.add_argument("--logs", default=DEFAULT_LOGS_DIR, help="folder of the runs' logs and checkpoints")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images of each subset")
    parser.add_argument("--epochs", type=int, default=None,
                        help="total epochs; the schedule's stages are rescaled to end there")
    parser.add_argument("--schedule", default=None,
                        help=f"stages layers:end_epoch[:lr_factor], comma-separated (default "
                             f"{jobs.DEFAULT_SCHEDULE!r}; 'all:<epochs>' with --weights=none); a later stage's "
                             f"smaller factor decays the rate, and warmup:<steps> warms it up linearly over the "
                             f"run's first steps (e.g. warmup:500,all:20,all:30:0.1)")
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch (Config.STEPS_PER_EPOCH)")
    parser.add_argument("--config", choices=tuple(CONFIGS), default=None,
                        help="settings: synthetic (small frames, narrow ResNet-50) or cityscapes (1024x2048 "
                             "frames); default: synthetic without --dataset, cityscapes with it")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a Config setting, e.g. --set VALIDATION_STEPS=10 --set "
                             "RPN_ANCHOR_SCALES='(16, 32, 64, 128, 256)' (repeatable)")
    parser.add_argument("--classes", type=int, choices=(8, 10), default=8,
                        help="8 benchmark classes, or all 10 instance classes (adds caravan, trailer)")
    parser.add_argument("--attention", action="store_true",
                        help="local self-attention instead of the 3x3 convolutions of ResNet stages 4 and 5 "
                             "(Config.ATTENTION_DEFAULT_STAGES); checkpoints of such runs need the flag too")
    parser.add_argument("--subset", default="val", help="subset to evaluate")
    parser.add_argument("--image", default=None, help="detect: an image file or a folder of images; "
                                                      "default: the first frames of --subset")
    parser.add_argument("--output", default=None, help="detect: folder for the overlay PNGs; export: the "
                                                       "SavedModel folder, .keras or .onnx file (default: "
                                                       "<run log dir>/detections for detect, <run log "
                                                       "dir>/export/<format> for export)")
    parser.add_argument("--format", choices=("saved_model", "keras", "onnx"), default="saved_model",
                        help="export: SavedModel (TF Serving), .keras, or ONNX (needs the onnx extra)")
    parser.add_argument("--min-score", type=float, default=0.5, help="detect: lowest score drawn")
    parser.add_argument("--skip-bad", action="store_true",
                        help="log and count unreadable or inconsistent frames instead of stopping")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights init, sampling and batches")
    parser.add_argument("--deterministic", action="store_true",
                        help="train: TensorFlow's deterministic ops (tf.config.experimental.enable_op_determinism), "
                             "so the same seed repeats a run exactly (without it, two CPU runs of a tiny model "
                             "logged losses 4.664 and 4.769 after two steps); TensorFlow documents that it can be "
                             "slower")
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


def make_config(args):
    base = CONFIGS[args.config or ("synthetic" if args.dataset is None else "cityscapes")]
    classes = BENCHMARK_CLASSES if args.classes == 8 else INSTANCE_CLASSES
    overrides = {"CLASSES": classes, "NUM_CLASSES": 1 + len(classes)}
    overrides.update(parse_setting(item) for item in args.set or ())
    if args.steps:
        overrides["STEPS_PER_EPOCH"] = args.steps
    if getattr(args, "gpus", None):
        overrides["GPU_COUNT"] = args.gpus
    if getattr(args, "precision", "float32") != "float32":
        overrides["MIXED_PRECISION"] = args.precision
    overrides["JIT_COMPILE"] = {"auto": None, "on": True, "off": False}[getattr(args, "xla", "auto")]
    if args.attention:
        overrides["ATTENTION_STAGES"] = tuple(base.ATTENTION_DEFAULT_STAGES)
        overrides["NAME"] = base.NAME + "_attention"  # its own runs: --weights=last never mixes the two
    return base(**overrides)


def dataset_dir(args):
    if args.dataset is None:
        return jobs.synthetic_root()
    if not os.path.isdir(args.dataset):
        raise UsageError(f"--dataset={args.dataset}: no such folder; expected the Cityscapes root holding "
                         f"leftImg8bit/ and gtFine/")
    return args.dataset


def resume_settings(args, explicit=()):
    """For ``train --weights=last``: the last run of this config NAME, its last checkpoint (None when it was
    stopped before its first) and ``args`` with the settings the run recorded, except those given again."""
    name = make_config(args).NAME
    runs = [r for r in modellib.run_dirs(args.logs, name)
            if modellib.checkpoints_of(r) or os.path.isfile(os.path.join(r, jobs.RUN_FILE))]
    if not runs:
        raise jobs.WeightsChoiceError(f"--weights=last: no run of {name!r} under {os.path.abspath(args.logs)}. "
                                      f"Train first, or pass --weights=none or a path.")
    run_dir = runs[-1]
    found = modellib.checkpoints_of(run_dir)
    checkpoint = found[-1] if found else None
    record = jobs.read_run(run_dir)
    if record is None:
        if checkpoint is None:
            raise jobs.WeightsChoiceError(f"--weights=last: {run_dir} has no checkpoint")
        print(f"Resuming {checkpoint} with this command's settings ({jobs.RUN_FILE} missing: older run)")
        return args, run_dir, checkpoint, None
    merged = vars(args).copy()
    for key in RUN_SETTINGS:
        recorded = record["settings"].get(key)
        if key in explicit and merged[key] != recorded:
            print(f"Overriding the run's --{key.replace('_', '-')}={recorded} with {merged[key]}")
        else:
            merged[key] = recorded
    where = f"from {os.path.basename(checkpoint)}" if checkpoint else "from its start (stopped before epoch 1)"
    print(f"Resuming run {run_dir} {where}, with the settings it recorded in {jobs.RUN_FILE}")
    return argparse.Namespace(**merged), run_dir, checkpoint, record


def run_train(args, explicit=None):
    explicit = getattr(args, "explicit", ()) if explicit is None else explicit
    weights = args.weights or ("none" if args.dataset is None else "coco")
    resume = weights.lower() == "last"
    if resume:
        args, run_dir, checkpoint, record = resume_settings(args, explicit)
        if record is not None:
            weights = record["weights"]
    config = make_config(args)
    # From random weights a frozen backbone learns nothing: train everything from the start.
    schedule = args.schedule or (jobs.DEFAULT_SCHEDULE if weights.lower() != "none" else "all:160")
    epochs = args.epochs or (SYNTHETIC_EPOCHS if args.dataset is None else None)
    stages = jobs.parse_schedule(schedule, epochs, config.LEARNING_RATE)
    if jobs.warmup_steps(schedule):
        config.LEARNING_RATE_WARMUP_STEPS = jobs.warmup_steps(schedule)
    root = dataset_dir(args)
    train_set = jobs.load_subset(root, "train", config.CLASSES, args.skip_bad, args.limit)
    val_set = jobs.load_subset(root, "val", config.CLASSES, args.skip_bad, args.limit)
    print(f"Dataset {root}: {len(train_set.image_ids)} train, {len(val_set.image_ids)} val images")
    config.display()
    keras.utils.set_random_seed(args.seed)  # weights initialisation; batches and ROI sampling take the seed below
    if args.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    model = modellib.MaskRCNN("training", config, args.logs, seed=args.seed)
    if resume and checkpoint:
        path = jobs.initial_weights(model, checkpoint)
    else:
        path = jobs.initial_weights(model, weights)
        if resume:  # stopped before its first checkpoint: start it over, in its own folder
            model.set_log_dir(os.path.join(run_dir, f"mask_rcnn_{config.NAME.lower()}_0000.h5"))
    print(f"Starting weights: {path or 'random initialisation'}")
    if distribute.is_chief():
        model.make_log_dir()  # the run's own folder (a new run: one no other run has), before run.json goes in
    if not os.path.isfile(os.path.join(model.log_dir, jobs.RUN_FILE)) and distribute.is_chief():
        settings = {**{key: getattr(args, key) for key in RUN_SETTINGS}, "schedule": schedule, "epochs": epochs}
        jobs.record_run(model.log_dir, settings, weights, schedule, stages, getattr(args, "argv", sys.argv))
    from mrcnn.data.augmentation import imgaug_augmenters

    iaa = imgaug_augmenters()  # imgaug 0.4 on NumPy 2

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


def run_export(args, model=None):
    """The whole inference path (molding, network, unmolding) as a file that serves without mrcnn."""
    from mrcnn.export import ExportError

    model = model or inference_model(args)
    default = {"saved_model": "saved_model", "keras": "mask_rcnn.keras", "onnx": "mask_rcnn.onnx"}[args.format]
    path = args.output or os.path.join(model.log_dir, "export", default)
    try:
        model.export(path, format=args.format)
    except ExportError as error:
        raise UsageError(str(error)) from None
    print(f"Exported {args.format} to {path}")
    return path


def parse_args(argv=None):
    """The command line as argparse reads it, plus ``args.explicit``: the options given (not defaulted),
    which ``train --weights=last`` keeps over the values the run recorded."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = ["cityscapes.py"] + argv  # what run.json records as the command
    args.explicit = sorted(a.dest for a in parser._actions
                           if a.dest != "help" and getattr(args, a.dest) != a.default)
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        {"train": run_train, "evaluate": run_evaluate, "detect": run_detect, "export": run_export}[args.command](args)
    except (UsageError, DistributeError, jobs.WeightsChoiceError, jobs.ScheduleError, CityscapesDataError, ConfigError,
            ImageLoadError, FileNotFoundError) as error:
        print(f"\ncityscapes.py {args.command}: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"\ncityscapes.py {args.command}: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
