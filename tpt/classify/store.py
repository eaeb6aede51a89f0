"""The resumable store of `tpt label`: OUT/labels.jsonl, one line per labelled document.

Each batch's results are appended and synced before the next batch starts, so
a killed run loses at most the batch in flight; a rerun reads the file and
skips every id in it. A last line cut short by the kill is dropped (its
document is labelled again), so no id is ever stored twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tpt.io.jsonlines import complete_lines


class LabelStore:
    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / "labels.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        rows = {row["id"]: row for row in complete_lines(self.path)}
        with open(self.path, "r+b") as stream:  # drop a line cut short, so appends start on a fresh line
            data = stream.read()
            stream.truncate(data.rfind(b"\n") + 1)
        return rows

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Add the rows of one batch, durable before this returns."""
        with open(self.path, "a", encoding="utf-8") as stream:
            for row in rows:
                stream.write(json.dumps(row, ensure_ascii=False) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        self.rows.update((row["id"], row) for row in rows)
