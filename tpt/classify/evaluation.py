"""Models measured on a labelled set: per-axis metrics and, per source, the share labelled as expected.

A source (the labels file's `source` column) is one kind of text whose labels
follow from its nature (data/classify/README.md). The share of each source a
model labels as expected shows which kinds of text it has learnt, which one
accuracy over a mixed set hides. The reasoning labels are ordered (the
taxonomy lists them from least to most reasoning), so each source also gets
its mean predicted reasoning level.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tpt.classify.labelset import LabelledDoc, read_labels_table
from tpt.classify.metrics import classification_metrics
from tpt.classify.model import AxisModel
from tpt.classify.taxonomy import Taxonomy
from tpt.classify.train import normalized_texts

REASONING = "reasoning"


def read_sources(path: str | Path) -> dict[str, str]:
    """Each document's source by id, from the labels file's `source` column ({} when it has none; "" for a row without one)."""
    table = read_labels_table(path)
    if "source" not in table.column_names:
        return {}
    return {str(id_): source or "" for id_, source in zip(table.column("id").to_pylist(), table.column("source").to_pylist())}


def evaluate_models(docs: list[LabelledDoc], sources: dict[str, str], models: dict[str, AxisModel], taxonomy: Taxonomy) -> dict[str, Any]:
    """Per axis: the model file and its metrics against the labels; under "sources": each source's figures."""
    texts = normalized_texts(docs)
    batch = [texts[doc.id] for doc in docs]
    predicted = {axis: [label for label, _ in model.predict(batch)] for axis, model in models.items()}
    report: dict[str, Any] = {
        axis: {"model": str(model.path), **classification_metrics([doc.labels[axis] for doc in docs], predicted[axis],
                                                                   list(taxonomy[axis].labels))}
        for axis, model in models.items()
    }
    report["sources"] = per_source(docs, sources, predicted, taxonomy) if sources else {}
    return report


def per_source(docs: list[LabelledDoc], sources: dict[str, str], predicted: dict[str, list[str]], taxonomy: Taxonomy) -> dict[str, Any]:
    """For each source: its documents, per axis the share predicted as labelled, and mean reasoning levels (0 = the first label)."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, doc in enumerate(docs):
        members[sources.get(doc.id, "")].append(i)
    level = {label: n for n, label in enumerate(taxonomy[REASONING].labels)}
    report = {}
    for source, rows in sorted(members.items()):
        figures: dict[str, Any] = {"documents": len(rows), "expected": {
            axis: round(sum(labels[i] == docs[i].labels[axis] for i in rows) / len(rows), 4) for axis, labels in predicted.items()
        }}
        if REASONING in predicted:
            figures["reasoning_level"] = round(sum(level[predicted[REASONING][i]] for i in rows) / len(rows), 3)
            figures["labelled_reasoning_level"] = round(sum(level[docs[i].labels[REASONING]] for i in rows) / len(rows), 3)
        report[source] = figures
    return report
