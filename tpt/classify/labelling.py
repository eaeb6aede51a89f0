"""Labelling a sample of documents, resumably: the loop shared by the LLM and bootstrap labellers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from tpt.classify.bootstrap import ANNOTATOR, BootstrapAnnotator
from tpt.classify.labelset import OK, label_row, write_labels
from tpt.classify.normalize import EmptyTextError
from tpt.classify.store import LabelStore
from tpt.classify.taxonomy import AXES, Taxonomy
from tpt.io.storage import Folder
from tpt.progress import Progress
from tpt.schema import Record

LABELS_FILE = "labels.parquet"


class Labeller(Protocol):
    def label(self, batch: list[Record]) -> list[dict[str, Any]]:
        """One labels-file row (see `label_row`) per record, in order."""


class BootstrapLabeller:
    """The rule-based annotator as a labeller; its features are kept as the row's answer."""

    def __init__(self, taxonomy: Taxonomy):
        self.annotator = BootstrapAnnotator(taxonomy)

    def label(self, batch: list[Record]) -> list[dict[str, Any]]:
        rows = []
        for record in batch:
            try:
                annotation = self.annotator.annotate(record.text)
            except EmptyTextError as error:
                rows.append(label_row(record, ANNOTATOR, None, error=f"text: {error}"))
                continue
            rows.append(label_row(record, ANNOTATOR, annotation.labels, answer=json.dumps(annotation.features)))
        return rows


def label_sample(records: list[Record], labeller: Labeller, out_dir: str | Path, batch_size: int) -> dict[str, Any]:
    """Label every record not yet in OUT/labels.jsonl, then write OUT/labels.parquet (sample order); returns counts.
    OUT is a local folder or any fsspec URL."""
    store = LabelStore(out_dir)
    todo = [record for record in records if record.id not in store.rows]
    progress = Progress("label", total=len(todo))
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            store.append(labeller.label(batch))
            progress.update(len(batch))
    finally:
        store.close()
    rows = [store.rows[record.id] for record in records]
    write_labels(Folder(out_dir).url_of(LABELS_FILE), rows)
    ok = [row for row in rows if row["status"] == OK]
    return {
        "documents": len(rows),
        "labelled_now": len(todo),
        "ok": len(ok),
        "failed": len(rows) - len(ok),
        "labels": {axis: dict(Counter(row[axis] for row in ok).most_common()) for axis in AXES},
    }
