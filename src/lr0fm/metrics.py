"""Accuracy and robustness metrics over stored predictions. Pure numpy: no torch here."""

from __future__ import annotations

import numpy as np


def accuracy_summary(labels: np.ndarray, top5: np.ndarray, n_classes: int) -> dict:
    """Top-1, top-5 (fractions), per-class recall and its mean over the classes present in `labels`."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return {"n": 0, "top1": float("nan"), "top5": float("nan"), "mean_per_class_recall": float("nan"),
                "per_class_recall": [None] * n_classes}
    top5 = np.asarray(top5, dtype=np.int64).reshape(len(labels), -1)
    hit1 = top5[:, 0] == labels
    hit5 = (top5 == labels[:, None]).any(axis=1)
    per_class = []
    for c in range(n_classes):
        members = labels == c
        per_class.append(float(hit1[members].mean()) if members.any() else None)
    present = [r for r in per_class if r is not None]
    return {
        "n": int(len(labels)),
        "top1": float(hit1.mean()),
        "top5": float(hit5.mean()),
        "mean_per_class_recall": float(np.mean(present)),
        "per_class_recall": per_class,
    }
