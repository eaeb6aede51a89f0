"""The resumable store of `tpt label`: OUT/labels.jsonl, one line per labelled document, at a path or any fsspec URL.

A resumable JSON-lines store (`tpt.io.jsonlines`) with one writer, `labels`.
Each batch's results are appended and flushed before the next batch starts, so
a killed run loses at most the batch in flight; a rerun reads the store and
skips every id in it. A last line cut short by the kill is dropped (its
document is labelled again), so no id is ever stored twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tpt.io.jsonlines import JsonLinesStore

WRITER = "labels"


class LabelStore:
    def __init__(self, out_dir: str | Path):
        self.lines = JsonLinesStore(out_dir)
        self.rows: dict[str, dict[str, Any]] = {row["id"]: row for _, row in self.lines.scan(WRITER)}
        self.lines.start_writing(WRITER)

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Add the rows of one batch, durable before this returns."""
        for row in rows:
            self.lines.append(row)
        self.lines.flush()
        self.rows.update((row["id"], row) for row in rows)

    def close(self) -> None:
        self.lines.close()
