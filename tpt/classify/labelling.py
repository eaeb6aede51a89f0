"""Labelling a sample of documents, resumably: the loop shared by the LLM and bootstrap labellers, each label stored as it comes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
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
    def label(self, records: Iterable[Record]) -> Iterator[dict[str, Any]]:
        """One labels-file row (see `label_row`) per record, each as soon as it is ready, in any order."""


class BootstrapLabeller:
    """The rule-based annotator as a labeller; its features are kept as the row's answer."""

    def __init__(self, taxonomy: Taxonomy):
        self.annotator = BootstrapAnnotator(taxonomy)

    def label(self, records: Iterable[Record]) -> Iterator[dict[str, Any]]:
        for record in records:
            try:
                annotation = self.annotator.annotate(record.text)
            except EmptyTextError as error:
                yield label_row(record, ANNOTATOR, None, error=f"text: {error}")
                continue
            yield label_row(record, ANNOTATOR, annotation.labels, answer=json.dumps(annotation.features))


def label_sample(records: list[Record], labeller: Labeller, out_dir: str | Path) -> dict[str, Any]:
    """Label every record not yet in OUT/labels.jsonl, storing each label as it comes, then write OUT/labels.parquet
    (sample order); returns counts. OUT is a local folder or any fsspec URL."""
    store = LabelStore(out_dir)
    todo = [record for record in records if record.id not in store.rows]
    progress = Progress("label", total=len(todo))
    try:
        for row in labeller.label(todo):
            store.append(row)
            progress.update(1, row["output_tokens"])
    finally:
        store.close()
    rows = [store.rows[record.id] for record in records]
    write_labels(Folder(out_dir).url_of(LABELS_FILE), rows)
    ok = [row for row in rows if row["status"] == OK]
    counts = {
        "documents": len(rows),
        "labelled_now": len(todo),
        "ok": len(ok),
        "failed": len(rows) - len(ok),
        "labels": {axis: dict(Counter(row[axis] for row in ok).most_common()) for axis in AXES},
    }
    counted = [row for row in rows if row.get("prompt_tokens")]  # answers whose server said what they cost
    if counted:
        counts["tokens_per_document"] = {name: round(sum(row[name] for row in counted) / len(counted), 1)
                                         for name in ("prompt_tokens", "output_tokens")}
    return counts
