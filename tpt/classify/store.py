"""The resumable store of `tpt label`: OUT/labels.jsonl, one line per labelled document, at a path or any fsspec URL.

A resumable JSON-lines store (`tpt.io.jsonlines`) with one writer, `labels`.
Each row is appended the moment its document is labelled: on a local disk it is
in the OS when `append` returns, so a killed process loses none, and it is
durable (fsync, or an object uploaded to an object store) at the next flush,
every FLUSH_EVERY_LINES rows or FLUSH_EVERY_SECONDS. A rerun reads the store and
skips every id in it. A last line cut short by the kill is dropped (its
document is labelled again), so no id is ever stored twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tpt.io.jsonlines import JsonLinesStore, skipping

WRITER = "labels"
FLUSH_EVERY_LINES = 256  # few objects on an object store, and at most this many labels to redo after a machine crash
FLUSH_EVERY_SECONDS = 30.0


class LabelStore:
    def __init__(self, out_dir: str | Path):
        self.lines = JsonLinesStore(out_dir, FLUSH_EVERY_LINES, FLUSH_EVERY_SECONDS)
        scanned = self.lines.scan(WRITER, skipping("its document is labelled again"))
        self.rows: dict[str, dict[str, Any]] = {row["id"]: row for _, row in scanned}
        self.lines.start_writing(WRITER)

    def append(self, row: dict[str, Any]) -> None:
        """Add one labelled document."""
        self.lines.append(row)
        self.rows[row["id"]] = row

    def close(self) -> None:
        """Make every row durable."""
        self.lines.close()
