"""OUT/thinking/: every finished generation, kept across runs so a rerun skips it.

A resumable JSON-lines store (`tpt.io.jsonlines`), on a local disk or behind
any fsspec URL. Each writer (one per worker process and run) is named
`<run>.<pid>.<random>` and writes a header with the start time, then one line
per result or failure, flushed every N lines or seconds. Results are keyed by
a fingerprint of what was asked (prompt, model, sampling, the sample's number),
not by the document that asked: the same text under another id or source, a
copy that became its cluster's kept one, finds the stored result; a changed
document or setting is generated afresh, never served stale. The first result
read wins.

A worker keeps only an index of the store in memory (where each result's line
is), never the thinking texts themselves: it reads back the results it reuses,
one batch at a time.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tpt.io.jsonlines import JsonLinesStore, Location

__all__ = ["Location", "ThinkingStore", "read_entries"]


class ThinkingStore(JsonLinesStore):
    def __init__(self, directory: str | Path, run_id: str, flush_every_docs: int = 64, flush_every_seconds: float = 30.0):
        super().__init__(directory, flush_every_docs, flush_every_seconds)
        self.run_id = run_id

    def index(self) -> dict[str, Location]:
        """Where every finished result is, by the fingerprint of what was asked."""
        done: dict[str, Location] = {}
        for location, entry in self.scan():
            if "raw" in entry:
                done.setdefault(entry["key"], location)
        return done

    def open(self, **header: Any) -> None:
        """Start this writer with a header line (its start time and `header`)."""
        self.start_writing(f"{self.run_id}.{os.getpid()}.{secrets.token_hex(4)}")
        self.append({"started": time.time(), **header})


def read_entries(directory: str | Path, run_id: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(writer, entry) for every complete line under `directory` (of one run if `run_id` is given)."""
    for location, entry in JsonLinesStore(directory).scan(f"{run_id}.*" if run_id else "*"):
        yield ".".join(location.name.split(".")[:3]), entry
