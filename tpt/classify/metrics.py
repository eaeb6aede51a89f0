"""Classifier quality on held-out labels: accuracy, per-class precision / recall / F1, confusion matrix."""

from __future__ import annotations

from collections import Counter
from typing import Any


def classification_metrics(gold: list[str], predicted: list[str], order: list[str]) -> dict[str, Any]:
    """Metrics of `predicted` against `gold`; classes in taxonomy `order`, only those that occur."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    classes = [label for label in order if label in set(gold) | set(predicted)]
    pairs = Counter(zip(gold, predicted))
    per_class = {}
    for label in classes:
        true_positive = pairs[(label, label)]
        support = sum(n for (g, _), n in pairs.items() if g == label)
        predicted_n = sum(n for (_, p), n in pairs.items() if p == label)
        precision = true_positive / predicted_n if predicted_n else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": support}
    supported = [c for c in per_class.values() if c["support"]]
    return {
        "documents": len(gold),
        "accuracy": round(sum(pairs[(c, c)] for c in classes) / len(gold), 4) if gold else None,
        "macro_f1": round(sum(c["f1"] for c in supported) / len(supported), 4) if supported else None,
        "per_class": per_class,
        # rows: gold label, columns: predicted label, both in `classes` order
        "confusion": {"labels": classes, "matrix": [[pairs[(g, p)] for p in classes] for g in classes]},
    }
