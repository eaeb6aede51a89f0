"""OUT/thinking/: every finished generation, kept across runs so a rerun skips it.

Each writer (one per worker process and run) appends JSON lines to its own part
file, `<run>.<pid>.<random>.jsonl`: a header with the start time, then one
line per result or failure. Each line reaches the OS as soon as its request
finishes, so a SIGKILL loses only requests in flight; `fsync` every N lines or
seconds bounds what a machine crash can lose. A line cut short by a kill is
ignored on reading. Results are keyed by request id and a fingerprint of what
was asked (prompt, model, sampling), so a changed document or setting is
generated afresh, never served stale; the first result read wins.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from tpt.io.jsonlines import complete_lines


class ThinkingStore:
    def __init__(self, directory: str | Path, run_id: str, flush_every_docs: int = 64, flush_every_seconds: float = 30.0):
        self.directory = Path(directory)
        self.run_id = run_id
        self.flush_every_docs = flush_every_docs
        self.flush_every_seconds = flush_every_seconds
        self._stream: TextIO | None = None
        self._unsynced = 0
        self._synced_at = 0.0
        self._lock = threading.Lock()

    def results(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every finished result on disk, by (request id, fingerprint)."""
        done: dict[tuple[str, str], dict[str, Any]] = {}
        for _, entry in read_entries(self.directory):
            if "raw" in entry:
                done.setdefault((entry["id"], entry["key"]), entry)
        return done

    def open(self, **header: Any) -> None:
        """Start this writer's part file with a header line (its start time and `header`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.run_id}.{os.getpid()}.{secrets.token_hex(4)}.jsonl"
        self._stream = open(path, "x", encoding="utf-8")
        self._synced_at = time.monotonic()
        self.append({"started": time.time(), **header})

    def append(self, entry: dict[str, Any]) -> None:
        """Write one line; it is in the OS when this returns, on disk after the next fsync."""
        with self._lock:
            self._stream.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._stream.flush()
            self._unsynced += 1
            if self._unsynced >= self.flush_every_docs or time.monotonic() - self._synced_at >= self.flush_every_seconds:
                self._sync()

    def close(self) -> None:
        if self._stream is not None:
            with self._lock:
                self._sync()
                self._stream.close()
                self._stream = None

    def _sync(self) -> None:
        os.fsync(self._stream.fileno())
        self._unsynced = 0
        self._synced_at = time.monotonic()


def read_entries(directory: Path, run_id: str | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(part file, entry) for every complete line under `directory` (of one run if `run_id` is given)."""
    pattern = f"{run_id}.*.jsonl" if run_id else "*.jsonl"
    for path in sorted(directory.glob(pattern)):
        for _, entry in complete_lines(path):
            yield path, entry
