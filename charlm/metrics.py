"""Classification figures from gold and predicted label ids: accuracy, per-label precision, recall, F1
and support, macro-F1 (the unweighted mean of the per-label F1, labels with support only), and the
confusion matrix (rows gold, columns predicted). A label never predicted has precision 0; F1 is 0 when
precision + recall is 0.
"""
from __future__ import annotations

import numpy as np


def confusion(gold, pred, n_labels: int) -> np.ndarray:
    """(C, C) int64 counts: [i, j] = examples of gold label i predicted as j."""
    m = np.zeros((n_labels, n_labels), np.int64)
    np.add.at(m, (np.asarray(gold), np.asarray(pred)), 1)
    return m


def classification_report(gold, pred, n_labels: int) -> dict:
    m = confusion(gold, pred, n_labels)
    tp = np.diag(m).astype(np.float64)
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(n_labels), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n_labels), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n_labels), where=denom > 0)
    total = int(m.sum())
    return {"accuracy": float(tp.sum() / total) if total else 0.0,
            "macro_f1": float(f1[support > 0].mean()) if (support > 0).any() else 0.0,
            "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
            "support": support.tolist(), "confusion": m.tolist(), "examples": total}
