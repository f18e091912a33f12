"""Evaluation: per-image AP (Matterport's compute_ap family) and data-set level metrics."""
