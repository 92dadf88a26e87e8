"""Segmentation scores on class maps (pure NumPy): PA and FWIoU (Table 4, VQ-GAN-Seg), mIoU.

Nothing here needs a network, so both the judges' own checks and :mod:`nuwa_lib.evaluation.metrics`
(Detected PA, Table 6, segments generated frames with the world segmenter first) use them.
"""
from __future__ import annotations

import numpy as np

from ..data import world


def confusion_matrix(pred, target, n_classes=world.N_SEG_CLASSES) -> np.ndarray:
    """(n_classes, n_classes) counts: rows = target class, columns = predicted class."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in shape")
    for name, x in (("pred", pred), ("target", target)):
        if x.size and (x.min() < 0 or x.max() >= n_classes):
            raise ValueError(f"{name} has labels outside 0..{n_classes - 1}")
    idx = target.astype(np.int64).ravel() * n_classes + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=n_classes ** 2).reshape(n_classes, n_classes)


def pixel_accuracy(pred, target) -> float:
    """PA: the fraction of pixels whose predicted class is the target's."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in shape")
    return float((pred == target).mean())


def _iou(cm):
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def fwiou(pred, target, n_classes=world.N_SEG_CLASSES) -> float:
    """FWIoU: IoU per class weighted by the class's share of target pixels."""
    cm = confusion_matrix(pred, target, n_classes)
    freq = cm.sum(1) / cm.sum()
    return float((freq * _iou(cm)).sum())


def mean_iou(pred, target, n_classes=world.N_SEG_CLASSES) -> float:
    """mIoU over the classes present in the target or the prediction."""
    cm = confusion_matrix(pred, target, n_classes)
    present = (cm.sum(0) + cm.sum(1)) > 0
    return float(_iou(cm)[present].mean())
