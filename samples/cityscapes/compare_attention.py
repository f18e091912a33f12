"""Does local self-attention in the backbone help? Train both variants the same way, over several seeds, and compare.

    python samples/cityscapes/compare_attention.py --seeds 3           # synthetic set, random weights, 6 epochs
    python samples/cityscapes/compare_attention.py --dataset=/data/cityscapes --weights=coco --epochs=24 --seeds 3

For each seed s (``--first-seed`` .. ``--first-seed + K - 1``) runs ``cityscapes.py train --seed=s
--deterministic`` once as is (baseline) and once with ``--attention``, each in its own process (so peak
memory is per run), with the same data, schedule and evaluation; ``--deterministic`` makes each run
repeat exactly, so the spread between seeds is the seeds' (weights, crops, sampling), not the machine's.
Then writes into ``<logs>/compare<YYYYmmddTHHMM>/`` (or ``--out``):

* ``comparison.md``: per variant the mean and standard deviation (sample, ddof=1) over seeds of the official
  AP and AP50, AP50 per class, COCO segm AP; the per-seed values; the paired differences attention - baseline
  per seed with their mean and a 95% Student-t interval (``mean +- t(0.975, K-1) * sd / sqrt(K)``, the
  interval of ``scipy.stats.ttest_rel``); parameters, backbone FLOPs, seconds per step and peak memory; and
  one sentence on what the interval can and cannot conclude.
* ``comparison.json``: all of it, with every run's summary.
* ``comparison.png``: AP and AP50 per variant (mean, error bars of one standard deviation, each seed a dot),
  the paired differences with their interval, and the validation loss per epoch of every run.

A run whose ``run_summary.json`` and evaluation are already in the output folder is not run again:
``--out`` an interrupted comparison's folder to finish it.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import glob
import json
import math
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT_DIR = os.path.abspath(os.path.join(HERE, "..", ".."))
VARIANTS = (("baseline", []), ("attention", ["--attention"]))
CONFIDENCE = 0.95
# On the synthetic set: 600 steps of 4 crops per run, where the baseline already learns (its official AP50
# was 0.79 with seed 0), so that 3 seeds of both variants take about half an hour on a 2-core CPU.
SYNTHETIC_EPOCHS = 6


def _finished_run(logs):
    """The run folder under ``logs`` that holds a summary and an evaluation, or None."""
    for run_dir in sorted(glob.glob(os.path.join(logs, "*"))):
        if (os.path.isfile(os.path.join(run_dir, "run_summary.json"))
                and os.path.isfile(os.path.join(run_dir, "evaluation_val", "evaluation.json"))):
            return run_dir
    return None


def train_command(name, extra, seed, args, logs):
    """The ``cityscapes.py train`` command line of one variant and seed."""
    command = [sys.executable, os.path.join(HERE, "cityscapes.py"), "train", f"--logs={logs}",
               f"--seed={seed}", "--deterministic", f"--weights={args.weights}"] + extra
    for flag in ("dataset", "epochs", "steps", "limit", "schedule"):
        value = getattr(args, flag)
        if value is not None:
            command.append(f"--{flag}={value}")
    return command


def run_variant(name, extra, seed, args, out_dir):
    """Train and evaluate one variant with one seed (unless already done in ``out_dir``); its summary."""
    logs = os.path.join(out_dir, f"{name}_seed{seed}")
    run_dir = _finished_run(logs)
    if run_dir is None:
        command = train_command(name, extra, seed, args, logs)
        print(f"\n=== {name}, seed {seed}: {' '.join(command)}", flush=True)
        subprocess.run(command, check=True)
        run_dir = _finished_run(logs)
        if run_dir is None:
            raise RuntimeError(f"{name} seed {seed}: the run under {logs} wrote no run_summary.json and "
                               f"evaluation_val/evaluation.json (was it run with --no-evaluate?)")
    else:
        print(f"=== {name}, seed {seed}: already done in {run_dir}", flush=True)
    with open(os.path.join(run_dir, "run_summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(run_dir, "evaluation_val", "evaluation.json")) as f:
        summary["evaluation"] = json.load(f)
    with open(os.path.join(run_dir, "training_log.csv")) as f:
        summary["val_loss"] = [float(row["val_loss"]) for row in csv.DictReader(f)]
    summary["run_dir"] = run_dir
    summary["seed"] = seed
    return summary


def mean_std(values):
    """Mean and sample standard deviation (ddof=1; 0 for one value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_interval(baseline, attention, confidence=CONFIDENCE):
    """Paired differences ``attention - baseline`` per seed: their mean, sd and Student-t interval.

    With one seed there is no interval (``low``/``high`` None).
    """
    from scipy import stats

    diffs = [a - b for a, b in zip(attention, baseline)]
    mean, std = mean_std(diffs)
    low = high = None
    if len(diffs) > 1:
        half = stats.t.ppf(0.5 + confidence / 2, len(diffs) - 1) * std / math.sqrt(len(diffs))
        low, high = mean - half, mean + half
    return {"per_seed": diffs, "mean": mean, "std": std, "low": low, "high": high, "confidence": confidence,
            "method": "Student t on the per-seed paired differences"}


METRICS = {  # name in the tables -> how to read it from a run's evaluation
    "AP": lambda e: e["AP"],
    "AP50": lambda e: e["AP50"],
    "COCO segm AP": lambda e: e["coco"]["segm"]["AP"],
}


def aggregate(results):
    """``results[variant] = [summary per seed]`` -> the statistics of the comparison."""
    names = list(results)
    seeds = [r["seed"] for r in results[names[0]]]
    for name in names:
        if [r["seed"] for r in results[name]] != seeds:
            raise ValueError(f"variants ran different seeds: {names[0]} {seeds}, {name} "
                             f"{[r['seed'] for r in results[name]]}")
    classes = list(results[names[0]][0]["evaluation"]["classes"])
    out = {"seeds": seeds, "variants": {}, "differences": {}}
    for name in names:
        runs = results[name]
        entry = {"per_seed": {}, "mean": {}, "std": {}}
        for metric, read in METRICS.items():
            values = [read(r["evaluation"]) for r in runs]
            entry["per_seed"][metric] = values
            entry["mean"][metric], entry["std"][metric] = mean_std(values)
        entry["class_AP50_mean"] = {c: mean_std([r["evaluation"]["classes"][c]["AP50"] for r in runs])[0]
                                    for c in classes}
        for key in ("params", "backbone_params", "backbone_gflops_per_image"):
            entry[key] = runs[0][key]
        for key in ("seconds_per_step", "peak_rss_mb"):
            entry[key], entry[key + "_std"] = mean_std([r[key] for r in runs])
        entry["final_val_loss"] = mean_std([r["val_loss"][-1] for r in runs])[0]
        out["variants"][name] = entry
    if len(names) == 2:
        base, other = names
        for metric in METRICS:
            out["differences"][metric] = paired_interval(out["variants"][base]["per_seed"][metric],
                                                         out["variants"][other]["per_seed"][metric])
    return out


def conclusion(stats, metric="AP50"):
    """One sentence: what the interval of the paired ``metric`` differences says."""
    names = list(stats["variants"])
    if len(names) != 2 or metric not in stats["differences"]:
        return ""
    diff = stats["differences"][metric]
    k = len(stats["seeds"])
    if diff["low"] is None:
        return (f"One seed: the difference in {metric} ({diff['mean']:+.3f}) has no interval; run --seeds 3 or "
                f"more before concluding anything.")
    span = f"[{diff['low']:+.3f}, {diff['high']:+.3f}]"
    if diff["low"] > 0 or diff["high"] < 0:
        better = names[1] if diff["low"] > 0 else names[0]
        return (f"Over {k} seeds the {100 * diff['confidence']:.0f}% interval of {names[1]} - {names[0]} in "
                f"{metric} is {span}, which excludes 0: {better} is better on this setting.")
    return (f"Over {k} seeds the {100 * diff['confidence']:.0f}% interval of {names[1]} - {names[0]} in {metric} "
            f"is {span}, which contains 0: these runs cannot tell the variants apart on this setting (a "
            f"difference smaller than about {max(abs(diff['low']), abs(diff['high'])):.3f} would go unseen).")


def table(stats):
    """The comparison as Markdown: summary, per-seed values, paired differences, costs."""
    names = list(stats["variants"])
    v = stats["variants"]
    lines = [f"Seeds: {', '.join(str(s) for s in stats['seeds'])} (mean +- sample standard deviation over seeds)",
             "", "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label, cells):
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    for metric in METRICS:
        label = f"{metric} (official)" if metric in ("AP", "AP50") else f"{metric} (pycocotools)"
        row(label, [f"{v[n]['mean'][metric]:.3f} +- {v[n]['std'][metric]:.3f}" for n in names])
    for cls in v[names[0]]["class_AP50_mean"]:
        row(f"{cls} AP50, mean", [f"{v[n]['class_AP50_mean'][cls]:.3f}" for n in names])
    row("parameters (model)", [f"{v[n]['params']:,}" for n in names])
    row("parameters (backbone + FPN)", [f"{v[n]['backbone_params']:,}" for n in names])
    row("backbone + FPN GFLOPs / image", [f"{v[n]['backbone_gflops_per_image']:.2f}" for n in names])
    row("seconds / training step", [f"{v[n]['seconds_per_step']:.3f} +- {v[n]['seconds_per_step_std']:.3f}"
                                    for n in names])
    row("peak memory (RSS, MiB)", [f"{v[n]['peak_rss_mb']:.0f}" for n in names])
    row("final val_loss, mean", [f"{v[n]['final_val_loss']:.3f}" for n in names])
    lines += ["", "Per seed (AP / AP50, official):", "",
              "| seed | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for i, seed in enumerate(stats["seeds"]):
        row(str(seed), [f"{v[n]['per_seed']['AP'][i]:.3f} / {v[n]['per_seed']['AP50'][i]:.3f}" for n in names])
    if stats["differences"]:
        lines += ["", f"Paired differences, {names[1]} - {names[0]} (same seed), with the "
                      f"{100 * CONFIDENCE:.0f}% Student-t interval of their mean:", "",
                  "| metric | per seed | mean | interval |", "|---|---|---|---|"]
        for metric, d in stats["differences"].items():
            interval = "n/a (one seed)" if d["low"] is None else f"[{d['low']:+.3f}, {d['high']:+.3f}]"
            lines.append(f"| {metric} | " + ", ".join(f"{x:+.3f}" for x in d["per_seed"])
                         + f" | {d['mean']:+.3f} | {interval} |")
        lines += ["", conclusion(stats)]
    return "\n".join(lines)


def plot(stats, results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(stats["variants"])
    fig, (bars, diffs, curves) = plt.subplots(1, 3, figsize=(15, 4.5))
    width = 0.8 / len(names)
    metrics = ("AP", "AP50")
    for i, name in enumerate(names):
        v = stats["variants"][name]
        xs = [m + i * width for m in range(len(metrics))]
        bars.bar(xs, [v["mean"][m] for m in metrics], width, yerr=[v["std"][m] for m in metrics], capsize=4,
                 label=name, alpha=0.8)
        for x, m in zip(xs, metrics):
            bars.scatter([x] * len(v["per_seed"][m]), v["per_seed"][m], color="black", s=12, zorder=3)
    bars.set_xticks([m + width * (len(names) - 1) / 2 for m in range(len(metrics))], metrics)
    bars.set_ylabel("official Cityscapes score")
    bars.set_title(f"mean +- sd over {len(stats['seeds'])} seeds (dots: seeds)")
    bars.legend()
    if stats["differences"]:
        labels = list(stats["differences"])
        for y, metric in enumerate(labels):
            d = stats["differences"][metric]
            if d["low"] is not None:
                diffs.errorbar([d["mean"]], [y], xerr=[[d["mean"] - d["low"]], [d["high"] - d["mean"]]], fmt="o",
                               capsize=5, color="tab:blue")
            diffs.scatter(d["per_seed"], [y] * len(d["per_seed"]), color="black", s=12, zorder=3)
        diffs.axvline(0, color="gray", linestyle="--")
        diffs.set_yticks(range(len(labels)), labels)
        diffs.set_xlabel(f"{names[1]} - {names[0]}")
        diffs.set_title(f"paired differences, {100 * CONFIDENCE:.0f}% t interval")
    for i, name in enumerate(names):
        color = f"C{i}"
        for run in results[name]:
            losses = run["val_loss"]
            curves.plot(range(1, len(losses) + 1), losses, color=color, alpha=0.7,
                        label=name if run is results[name][0] else None)
    curves.set_xlabel("epoch")
    curves.set_ylabel("val_loss")
    curves.set_yscale("log")
    curves.set_title("validation loss, every seed")
    curves.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(results, out_dir):
    stats = aggregate(results)
    text = table(stats)
    with open(os.path.join(out_dir, "comparison.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out_dir, "comparison.json"), "w") as f:
        json.dump({"statistics": stats, "runs": results}, f, indent=2)
    plot(stats, results, os.path.join(out_dir, "comparison.png"))
    return stats, text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=None, help="Cityscapes root; omitted: the synthetic set")
    parser.add_argument("--weights", default="none", help="starting weights of both (coco | imagenet | none | path)")
    parser.add_argument("--logs", default=os.path.join(ROOT_DIR, "logs"))
    parser.add_argument("--out", default=None, help="output folder (default <logs>/compare<YYYYmmddTHHMM>); an "
                                                    "existing one is continued: finished runs are reused")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (K)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs of each run (default: {SYNTHETIC_EPOCHS} on the synthetic set, the schedule's "
                             f"own with --dataset)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--schedule", default=None)
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if args.epochs is None and args.dataset is None:
        args.epochs = SYNTHETIC_EPOCHS
    out_dir = args.out or os.path.join(args.logs, f"compare{datetime.datetime.now():%Y%m%dT%H%M}")
    os.makedirs(out_dir, exist_ok=True)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results = {name: [] for name, _ in VARIANTS}
    for seed in seeds:  # seed-major: after each seed both variants have a result to compare
        for name, extra in VARIANTS:
            results[name].append(run_variant(name, extra, seed, args, out_dir))
    _, text = write_outputs(results, out_dir)
    print("\n" + text + f"\n\nWrote {out_dir}/comparison.md, comparison.json, comparison.png")
    return out_dir


if __name__ == "__main__":
    main()
