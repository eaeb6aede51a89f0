"""Labelled documents: what `tpt label` writes and `tpt classifiers train/eval` read.

One Parquet row per sampled document: its text, one label per axis, and a
status ("ok" or "failed", with the error) so failed labellings stay visible
instead of vanishing from the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from tpt.classify.taxonomy import AXES, Taxonomy
from tpt.io.storage import filesystem, staged_file
from tpt.schema import Record

OK, FAILED = "ok", "failed"
LABEL_SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("text", pa.string()),
    *(pa.field(axis, pa.string()) for axis in AXES),
    pa.field("status", pa.string()),
    pa.field("error", pa.string()),
    pa.field("annotator", pa.string()),  # "bootstrap", or the labelling model
    pa.field("answer", pa.string()),  # the raw LLM answer, or the bootstrap features as JSON: the evidence for the labels
    pa.field("prompt_tokens", pa.int64()),  # what the labelling cost, both attempts of a retried answer (0: not counted)
    pa.field("output_tokens", pa.int64()),
])


@dataclass(frozen=True)
class LabelledDoc:
    id: str
    text: str
    labels: dict[str, str]  # axis -> label


def label_row(record: Record, annotator: str, labels: dict[str, str] | None, answer: str = "", error: str | None = None,
              prompt_tokens: int = 0, output_tokens: int = 0) -> dict[str, Any]:
    """One labels-file row: status "ok" with a label per axis, or "failed" with the error."""
    labels = labels or {}
    return {
        "id": record.id, "source": record.source, "text": record.text, **{axis: labels.get(axis) for axis in AXES},
        "status": FAILED if error else OK, "error": error, "annotator": annotator, "answer": answer,
        "prompt_tokens": prompt_tokens, "output_tokens": output_tokens,
    }


def write_labels(target: str | Path, rows: list[dict[str, Any]]) -> None:
    """The rows (dicts with LABEL_SCHEMA's keys) as a Parquet file at a path or fsspec URL, whole or not at all."""
    table = pa.Table.from_pylist(rows, schema=LABEL_SCHEMA)
    with staged_file(target) as local:
        pq.write_table(table, local)


def read_labels_table(location: str | Path) -> pa.Table:
    """A labels file (JSONL when named .jsonl or .json, else Parquet) at a local path or fsspec URL,
    so labels written to an object store are read where they lie."""
    fs, path = filesystem(location)
    try:
        with fs.open(path, "rb") as stream:
            return pajson.read_json(stream) if path.endswith((".jsonl", ".json")) else pq.read_table(stream)
    except FileNotFoundError:
        raise FileNotFoundError(f"{location}: no such labels file") from None


def read_labels(path: str | Path, taxonomy: Taxonomy) -> tuple[list[LabelledDoc], int]:
    """The usable labelled documents of a labels file (Parquet or JSONL, local or at a URL)
    and how many failed rows were left out.

    Every label must be in the taxonomy: a wrong one is an error naming the row, never skipped.
    """
    table = read_labels_table(path)
    missing = [name for name in ("id", "text", *AXES) if name not in table.column_names]
    if missing:
        raise ValueError(f"{path}: labels file lacks the columns {', '.join(missing)}")
    docs, failed = [], 0
    for row in table.to_pylist():
        if row.get("status", OK) != OK:
            failed += 1
            continue
        where = f"{path}: id {row['id']}"
        labels = {axis: taxonomy[axis].check(row[axis], where=where) for axis in AXES}
        docs.append(LabelledDoc(str(row["id"]), row["text"], labels))
    if not docs:
        raise ValueError(f"{path}: no usable labelled documents ({failed} failed)")
    return docs, failed
