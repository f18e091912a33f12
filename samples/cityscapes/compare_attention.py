"""Does local self-attention in the backbone help? Train both variants the same way and compare.

    python samples/cityscapes/compare_attention.py                 # synthetic set, from random weights
    python samples/cityscapes/compare_attention.py --dataset=/data/cityscapes --weights=coco --epochs=24

Runs ``cityscapes.py train`` twice, each in its own process (so peak memory is per variant) with the same
seed, data, schedule and evaluation, once as is and once with ``--attention``; then writes into
``<logs>/compare<YYYYmmddTHHMM>/``: ``comparison.md`` (official AP and AP50 per class, parameters,
backbone FLOPs, seconds per step, peak memory), ``comparison.json`` and ``comparison.png`` (AP50 per class
and the validation loss per epoch of both).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT_DIR = os.path.abspath(os.path.join(HERE, "..", ".."))
VARIANTS = (("baseline", []), ("attention", ["--attention"]))


def run_variant(name, extra, args, out_dir):
    logs = os.path.join(out_dir, name)
    command = [sys.executable, os.path.join(HERE, "cityscapes.py"), "train", f"--logs={logs}",
               f"--seed={args.seed}", f"--weights={args.weights}"] + extra
    for flag in ("dataset", "epochs", "steps", "limit", "schedule"):
        value = getattr(args, flag)
        if value is not None:
            command.append(f"--{flag}={value}")
    print(f"\n=== {name}: {' '.join(command)}", flush=True)
    subprocess.run(command, check=True)
    (run_dir,) = [d for d in glob.glob(os.path.join(logs, "*")) if os.path.isdir(d)]
    with open(os.path.join(run_dir, "run_summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(run_dir, "evaluation_val", "evaluation.json")) as f:
        summary["evaluation"] = json.load(f)
    with open(os.path.join(run_dir, "training_log.csv")) as f:
        summary["val_loss"] = [float(row["val_loss"]) for row in csv.DictReader(f)]
    summary["run_dir"] = run_dir
    return summary


def table(results):
    """The comparison as a Markdown table: one column per variant."""
    names = list(results)
    rows = [("| | " + " | ".join(names) + " |"), "|---|" + "---|" * len(names)]

    def row(label, fmt, get):
        rows.append(f"| {label} | " + " | ".join(fmt.format(get(results[n])) for n in names) + " |")

    row("AP (official)", "{:.3f}", lambda r: r["evaluation"]["AP"])
    row("AP50 (official)", "{:.3f}", lambda r: r["evaluation"]["AP50"])
    for cls in results[names[0]]["evaluation"]["classes"]:
        row(f"{cls} AP / AP50", "{}", lambda r, c=cls: "{:.3f} / {:.3f}".format(
            r["evaluation"]["classes"][c]["AP"], r["evaluation"]["classes"][c]["AP50"]))
    row("COCO segm AP (pycocotools)", "{:.3f}", lambda r: r["evaluation"]["coco"]["segm"]["AP"])
    row("parameters (model)", "{:,}", lambda r: r["params"])
    row("parameters (backbone + FPN)", "{:,}", lambda r: r["backbone_params"])
    row("backbone + FPN GFLOPs / image", "{:.2f}", lambda r: r["backbone_gflops_per_image"])
    row("seconds / training step", "{:.3f}", lambda r: r["seconds_per_step"])
    row("peak memory (RSS, MiB)", "{:.0f}", lambda r: r["peak_rss_mb"])
    row("final val_loss", "{:.3f}", lambda r: r["val_loss"][-1])
    return "\n".join(rows)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    classes = list(results[names[0]]["evaluation"]["classes"])
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [results[name]["evaluation"]["classes"][c]["AP50"] for c in classes]
        bars.bar([x + i * width for x in range(len(classes))], values, width, label=name)
        losses = results[name]["val_loss"]
        curves.plot(range(1, len(losses) + 1), losses, marker="o", label=name)
    bars.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(classes))], classes, rotation=30)
    bars.set_ylabel("AP50 (official)")
    bars.set_title("AP50 per class")
    bars.legend()
    curves.set_xlabel("epoch")
    curves.set_ylabel("val_loss")
    curves.set_yscale("log")
    curves.set_title("validation loss")
    curves.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=None, help="Cityscapes root; omitted: the synthetic set")
    parser.add_argument("--weights", default="none", help="starting weights of both (coco | imagenet | none | path)")
    parser.add_argument("--logs", default=os.path.join(ROOT_DIR, "logs"))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--schedule", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out_dir = os.path.join(args.logs, f"compare{datetime.datetime.now():%Y%m%dT%H%M}")
    os.makedirs(out_dir, exist_ok=True)
    results = {name: run_variant(name, extra, args, out_dir) for name, extra in VARIANTS}
    text = table(results)
    with open(os.path.join(out_dir, "comparison.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out_dir, "comparison.json"), "w") as f:
        json.dump(results, f, indent=2)
    plot(results, os.path.join(out_dir, "comparison.png"))
    print("\n" + text + f"\n\nWrote {out_dir}/comparison.md, comparison.json, comparison.png")
    return out_dir


if __name__ == "__main__":
    main()
