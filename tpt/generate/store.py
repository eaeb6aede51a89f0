"""OUT/thinking/: every finished generation, kept across runs so a rerun skips it.

Each writer (one per worker process and run) is named `<run>.<pid>.<random>`
and writes JSON lines: a header with the start time, then one line per result
or failure. On a local or shared disk the writer appends to its own file,
`<writer>.jsonl`, and each line reaches the OS as soon as its request finishes,
so a SIGKILL loses only requests in flight; `fsync` every N lines or seconds
bounds what a machine crash can lose. Object stores (`gs://`, `s3://`) cannot
append, so there each flush (the same every N lines or seconds) uploads the
lines since the last one as a new object `<writer>.<NNNNNN>.jsonl`, and a kill
loses what was not flushed yet. A line cut short by a kill is ignored on
reading. Results are keyed by request id and a fingerprint of what was asked
(prompt, model, sampling), so a changed document or setting is generated
afresh, never served stale; the first result read wins.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from tpt.io.jsonlines import parse_lines
from tpt.io.storage import Folder

OBJECTS_PER_FETCH = 256


class ThinkingStore:
    def __init__(self, directory: str | Path, run_id: str, flush_every_docs: int = 64, flush_every_seconds: float = 30.0):
        self.folder = Folder(directory)
        self.run_id = run_id
        self.flush_every_docs = flush_every_docs
        self.flush_every_seconds = flush_every_seconds
        self._writer = ""
        self._stream: TextIO | None = None  # the local part file; object stores get `_pending` lines instead
        self._pending: list[str] = []
        self._flushes = 0
        self._unsynced = 0
        self._synced_at = 0.0
        self._lock = threading.Lock()

    def results(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every finished result stored, by (request id, fingerprint)."""
        done: dict[tuple[str, str], dict[str, Any]] = {}
        for _, entry in read_entries(self.folder.url):
            if "raw" in entry:
                done.setdefault((entry["id"], entry["key"]), entry)
        return done

    def open(self, **header: Any) -> None:
        """Start this writer with a header line (its start time and `header`)."""
        self._writer = f"{self.run_id}.{os.getpid()}.{secrets.token_hex(4)}"
        if self.folder.is_local:
            Path(self.folder.root).mkdir(parents=True, exist_ok=True)
            self._stream = open(self.folder.path(f"{self._writer}.jsonl"), "x", encoding="utf-8")
        self._synced_at = time.monotonic()
        self.append({"started": time.time(), **header})

    def append(self, entry: dict[str, Any]) -> None:
        """Store one line: locally it is in the OS when this returns; it is durable after the next flush."""
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            if self._stream is not None:
                self._stream.write(line)
                self._stream.flush()
            else:
                self._pending.append(line)
            self._unsynced += 1
            if self._unsynced >= self.flush_every_docs or time.monotonic() - self._synced_at >= self.flush_every_seconds:
                self._sync()

    def flush(self) -> None:
        with self._lock:
            self._sync()

    def close(self) -> None:
        with self._lock:
            self._sync()
            if self._stream is not None:
                self._stream.close()
                self._stream = None

    def _sync(self) -> None:
        if self._stream is not None:
            os.fsync(self._stream.fileno())
        elif self._pending:
            self.folder.write_text(f"{self._writer}.{self._flushes:06d}.jsonl", "".join(self._pending))
            self._pending, self._flushes = [], self._flushes + 1
        self._unsynced = 0
        self._synced_at = time.monotonic()


def read_entries(directory: str | Path, run_id: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(writer, entry) for every complete line under `directory` (of one run if `run_id` is given)."""
    folder = Folder(directory)
    for name, lines in _part_lines(folder, folder.glob(f"{run_id}.*.jsonl" if run_id else "*.jsonl")):
        writer = ".".join(name.split(".")[:3])
        for _, entry in parse_lines(lines, folder.url_of(name)):
            yield writer, entry


def _part_lines(folder: Folder, names: list[str]) -> Iterator[tuple[str, Iterable[str]]]:
    """Each part's lines: local files streamed; objects fetched OBJECTS_PER_FETCH at a time, concurrently
    on filesystems that can (gcsfs, s3fs), since an object store holds one small object per flush."""
    if folder.is_local:
        for name in names:
            with open(folder.path(name), encoding="utf-8") as stream:
                yield name, stream
        return
    for start in range(0, len(names), OBJECTS_PER_FETCH):
        chunk = names[start:start + OBJECTS_PER_FETCH]
        data = folder.fs.cat([folder.path(name) for name in chunk])
        for name in chunk:
            yield name, data[folder.path(name)].decode("utf-8").splitlines(keepends=True)
