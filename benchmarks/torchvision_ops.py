"""torchvision for the benchmarks, also where its compiled ops cannot load.

PyPI's torchvision wheel for Linux is built against CUDA torch; beside the CPU torch this project's backends
install (``torch==2.13.0+cpu``), its ``_C`` extension does not load (it links ``libtorch_cuda.so``) and
``import torchvision`` fails registering fake kernels for ops that do not exist. :func:`import_torchvision`
then imports it without those registrations and gives it Python ops, :func:`roi_align` and :func:`nms` below:
the compiled CPU kernels' rules (roi_align equals a loop transcribing the kernel to 1e-15; nms is greedy, a box
dropped when its IoU with a higher-scored kept box exceeds the threshold, equal to Matterport's NumPy NMS).
Results are the kernels'; times are not, so a benchmark using the fallback says so.
"""

from __future__ import annotations

import sys
import types


def nms(boxes, scores, iou_threshold):
    """Indices of the boxes kept by greedy non-maximum suppression, highest score first (NumPy, one pass per
    kept box over the boxes still in play)."""
    import numpy as np
    import torch

    b = boxes.detach().cpu().numpy().astype(np.float64)
    order = np.argsort(-scores.detach().cpu().numpy(), kind="stable")
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = w * h
        iou = inter / (area[i] + area[rest] - inter)
        order = rest[~(iou > iou_threshold)]
    return torch.as_tensor(np.array(keep, dtype=np.int64), device=boxes.device)


def roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    """torchvision's roi_align (the CPU kernel's rule) with ``grid_sample``: each bin the mean of its bilinear
    samples, a sample outside ``[-1, size]`` zero and one inside clamped to ``[0, size - 1]``; an adaptive
    ``sampling_ratio`` (<= 0) is ``ceil(roi size / bins)`` per ROI, as the kernel's."""
    import torch
    import torch.nn.functional as F

    K = rois.shape[0]
    C, H, W = input.shape[1:]
    out = input.new_zeros((K, C, pooled_height, pooled_width))
    if K == 0:
        return out
    offset = 0.5 if aligned else 0.0
    start_x = rois[:, 1] * spatial_scale - offset
    start_y = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - start_x
    roi_h = rois[:, 4] * spatial_scale - offset - start_y
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / pooled_height, roi_w / pooled_width
    if sampling_ratio > 0:
        grid_h = torch.full((K,), sampling_ratio, dtype=torch.int64)
        grid_w = grid_h.clone()
    else:
        grid_h, grid_w = torch.ceil(roi_h / pooled_height).long(), torch.ceil(roi_w / pooled_width).long()
    batch = rois[:, 0].long()
    keys = torch.stack([batch, grid_h, grid_w], 1).tolist()
    for key in sorted(set(map(tuple, keys))):
        b, gh, gw = key
        index = torch.tensor([i for i, k in enumerate(keys) if tuple(k) == key], dtype=torch.int64)
        iy = (torch.arange(pooled_height, dtype=input.dtype)[:, None] +
              (torch.arange(max(gh, 1), dtype=input.dtype)[None, :] + 0.5) / max(gh, 1)).reshape(-1)
        ix = (torch.arange(pooled_width, dtype=input.dtype)[:, None] +
              (torch.arange(max(gw, 1), dtype=input.dtype)[None, :] + 0.5) / max(gw, 1)).reshape(-1)
        y = start_y[index, None] + iy[None, :] * bin_h[index, None]  # [k, PH * gh]
        x = start_x[index, None] + ix[None, :] * bin_w[index, None]  # [k, PW * gw]
        valid = ((y >= -1) & (y <= H))[:, :, None] & ((x >= -1) & (x <= W))[:, None, :]
        gy = 2 * y.clamp(0, H - 1) / max(H - 1, 1) - 1
        gx = 2 * x.clamp(0, W - 1) / max(W - 1, 1) - 1
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # [k, Y, X, 2]
        k, Y, X = grid.shape[:3]
        sampled = F.grid_sample(input[b:b + 1], grid.reshape(1, k * Y, X, 2), mode="bilinear",
                                padding_mode="border", align_corners=True)  # [1, C, k * Y, X]
        sampled = sampled.reshape(C, k, Y, X).permute(1, 0, 2, 3) * valid[:, None].to(input.dtype)
        pooled = sampled.reshape(k, C, pooled_height, max(gh, 1), pooled_width, max(gw, 1)).mean(dim=(3, 5))
        out = out.index_copy(0, index, pooled)
    return out


def import_torchvision():
    """``(torchvision, compiled_ops)``: torchvision imported, and whether its compiled ops are the ones in use."""
    import torch

    try:
        import torchvision

        torchvision.ops.nms(torch.zeros((1, 4)), torch.zeros(1), 0.5)
        return torchvision, True
    except (RuntimeError, OSError):
        pass
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules[name] = types.ModuleType(name)
    import torchvision
    import torchvision.ops.boxes
    import torchvision.ops.roi_align

    torchvision.ops.boxes.nms = nms
    torchvision.ops.nms = nms
    # torchvision's own Python roi_align is compiled on first use and recompiles for new ROI counts (7 s of a
    # 12 s training step at 128x128); eager, it took 54 s
    sys.modules["torchvision.ops.roi_align"]._roi_align = roi_align
    return torchvision, False
