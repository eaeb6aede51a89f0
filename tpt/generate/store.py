"""OUT/thinking/: every finished generation, kept across runs so a rerun skips it.

A resumable JSON-lines store (`tpt.io.jsonlines`), on a local disk or behind
any fsspec URL. Each writer (one per worker process and run) is named
`<run>.<pid>.<random>` and writes a header with the start time, then one line
per result or failure, flushed every N lines or seconds. Results are keyed by
a fingerprint of what was asked (prompt, model, sampling, the sample's number),
not by the document that asked: the same text under another id or source, a
copy that became its cluster's kept one, finds the stored result. A result
also names what its text asks once normalised (`same_text`, where that
differs), so a copy that differs only in what normalisation removes finds it
too (tpt.generate.samples). A changed document or setting is generated
afresh, never served stale. The first result read wins.

A worker keeps only an index of the store in memory (where each result's line
is), never the thinking texts themselves: it reads back the results it reuses,
one batch at a time.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tpt.io.jsonlines import JsonLinesStore, Location, skipping

__all__ = ["Location", "ThinkingStore", "read_entries"]

log = logging.getLogger(__name__)


class ThinkingStore(JsonLinesStore):
    def __init__(self, directory: str | Path, run_id: str, flush_every_docs: int = 64, flush_every_seconds: float = 30.0):
        super().__init__(directory, flush_every_docs, flush_every_seconds)
        self.run_id = run_id

    def index(self, longest: int | None = None) -> dict[str, Location]:
        """Where every finished result is, by the fingerprint of what was asked and, where it differs, of what its text
        asks normalised (`same_text`). A result that cannot be used (see `unusable`; a line over `longest` bytes,
        stored whole before answers were bounded; a line that is not JSON) is left out, so its request is generated
        again: it never stops a run."""
        done: dict[str, Location] = {}
        skipped: Counter = Counter()
        for location, entry in self.scan(on_corrupt=skipping("its request is generated again")):
            if "raw" not in entry:
                continue
            reason = "longer than any answer within its budget" if longest and location.length > longest else unusable(entry)
            if reason:
                skipped[reason] += 1
            else:
                done.setdefault(entry["key"], location)
                if isinstance(entry.get("same_text"), str):
                    done.setdefault(entry["same_text"], location)
        for reason, count in skipped.items():
            log.warning("%s: %d stored result(s) %s; their requests are generated again", self.folder.url, count, reason)
        return done

    def open(self, **header: Any) -> None:
        """Start this writer with a header line (its start time and `header`)."""
        self.start_writing(f"{self.run_id}.{os.getpid()}.{secrets.token_hex(4)}")
        self.append({"started": time.time(), **header})


def unusable(entry: dict[str, Any]) -> str | None:
    """Why a stored result cannot be used (written by hand, or by another version), or None. Its text may still hold
    code points no tokenizer takes: they are replaced when it is read back (tpt.generate.answers.sanitise)."""
    if not all(isinstance(entry.get(name), str) for name in ("id", "key", "raw", "finish_reason")):
        return "have no text, id, key or finish reason"
    return None


def read_entries(directory: str | Path, run_id: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(writer, entry) for every complete line under `directory` (of one run if `run_id` is given)."""
    for location, entry in JsonLinesStore(directory).scan(f"{run_id}.*" if run_id else "*", skipping("left out of the count")):
        yield ".".join(location.name.split(".")[:3]), entry
