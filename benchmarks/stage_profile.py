"""Where a training step or an inference call spends its time, by stage of the Mask R-CNN graph.

TensorFlow's profiler records every op a call runs with its self time; each op is named after the Keras layer
that created it (``mask_rcnn_1/mrcnn_mask_conv1_1/...``; gradients under ``gradient_tape/``, the optimizer's
update under its own name). :func:`stage_profile` adds the self times up by the stage each layer belongs to
(:func:`layer_stages`: by name, and for unnamed layers such as activations, the stage of the layer feeding them)
and scales the shares to the call's wall time measured apart, without the profiler. Needs the TensorFlow
backend and its profiler plugin (``tensorflow.python.profiler.internal``); XLA fuses ops across layers, so
profile with XLA off.
"""

from __future__ import annotations

import glob
import json
import re
import tempfile
from collections import OrderedDict

FORWARD_STAGES = ("backbone+FPN", "RPN", "proposals", "detection targets", "ROIAlign (classifier)",
                  "ROIAlign (mask)", "classifier head", "mask head", "detections", "losses")
STAGES = FORWARD_STAGES + ("backward", "optimizer", "other")

# by layer name; layers matching none take the stage of the layer feeding them (backbone+FPN at the start)
_RULES = [
    (r"^(rpn_model|rpn_class_logits|rpn_class|rpn_bbox)$", "RPN"),
    (r"^(ROI|anchors)$", "proposals"),
    (r"^(proposal_targets|norm_gt_boxes|output_rois)$", "detection targets"),
    (r"^roi_align_classifier", "ROIAlign (classifier)"),
    (r"^roi_align_mask", "ROIAlign (mask)"),
    (r"^(mrcnn_class|mrcnn_bbox|pool_squeeze)", "classifier head"),
    (r"^mrcnn_mask", "mask head"),
    (r"^(mrcnn_detection|detection_boxes)$", "detections"),
    (r"_loss$|^active_class_ids$", "losses"),
]


def layer_stages(model):
    """``{layer name: stage}`` for every layer of a Keras functional model."""
    stages = {}
    for layer in model.layers:  # topological order
        stage = next((s for pattern, s in _RULES if re.search(pattern, layer.name)), None)
        if stage is None:
            inbound = [t._keras_history[0].name for node in getattr(layer, "_inbound_nodes", [])[:1]
                       for t in node.input_tensors]
            stage = next((stages[n] for n in inbound if n in stages and stages[n] != "backbone+FPN"),
                         "backbone+FPN")
        stages[layer.name] = stage
    return stages


def op_self_times(fn):
    """Run ``fn`` under TensorFlow's profiler; ``[(op name, self microseconds)]`` of the ops it ran (the
    profiler's top 500, which it says cover, and the share of host time they cover)."""
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    logdir = tempfile.mkdtemp(prefix="mrcnn_profile_")
    tf.profiler.experimental.start(logdir)
    try:
        fn()
    finally:
        tf.profiler.experimental.stop()
    paths = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
    data, ok = _pywrap_profiler_plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"the profiler wrote nothing readable to {logdir}")
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    rows = [dict(zip(columns, [c.get("v") if c else None for c in r["c"]])) for r in table["rows"]]
    ops = [(r["operation"], float(r["total_self_time"])) for r in rows if r["type"] != "IDLE"]
    covered = max((r.get("Host_cumulative_total_self_time_percent") or 0.0) for r in rows)
    return ops, covered


def _layer_of(op_name, model_name, stages):
    parts = op_name.split("/")
    if len(parts) < 2 or not re.fullmatch(rf"{re.escape(model_name)}(_\d+)?", parts[0]):
        return None
    scope = parts[1]
    for candidate in (re.sub(r"_\d+$", "", scope), scope):
        if candidate in stages:
            return candidate
    return None


def stage_profile(model, fn, wall_seconds):
    """Seconds and percent of ``wall_seconds`` per stage for one ``fn()`` call running ``model``.

    Forward ops go to their layer's stage; every op under ``gradient_tape/`` to "backward" (and, split by the
    same stages, to ``backward_by_stage``); the optimizer's ops (named after it) to "optimizer"; the rest
    (weight decay terms, the step's bookkeeping) to "other".
    """
    stages = layer_stages(model)
    ops, covered = op_self_times(fn)
    optimizer = getattr(getattr(model, "optimizer", None), "name", None) or "optimizer"
    totals = dict.fromkeys(STAGES, 0.0)
    backward = dict.fromkeys(FORWARD_STAGES + ("other",), 0.0)
    for name, micros in ops:
        if name.startswith("gradient_tape/"):
            totals["backward"] += micros
            layer = _layer_of(name[len("gradient_tape/"):], model.name, stages)
            backward[stages[layer] if layer else "other"] += micros
            continue
        layer = _layer_of(name, model.name, stages)
        if layer is not None:
            totals[stages[layer]] += micros
        elif name.split("/")[0].lower() in (optimizer.lower(), "sgd", "adam", "adamw"):
            totals["optimizer"] += micros
        else:
            totals["other"] += micros
    total = sum(totals.values()) or 1.0
    table = OrderedDict((stage, {"s": round(wall_seconds * t / total, 3), "percent": round(100 * t / total, 1)})
                        for stage, t in totals.items() if t > 0)
    return {"wall_s": wall_seconds, "stages": table,
            "backward_by_stage_percent": {s: round(100 * t / total, 1) for s, t in backward.items() if t > 0},
            "profiler_covered_percent_of_host_time": round(100 * covered, 1)}


def markdown(profile, title):
    """The profile as a Markdown table (stage, seconds, percent)."""
    lines = [f"| {title} | s | % |", "| --- | --- | --- |"]
    lines += [f"| {stage} | {v['s']} | {v['percent']} |" for stage, v in profile["stages"].items()]
    lines.append(f"| total (wall) | {profile['wall_s']} | 100 |")
    return "\n".join(lines)
