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

A worker keeps only an index of the store in memory (where each result's line
is), never the thinking texts themselves: it reads back the results it reuses,
one batch at a time.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from tpt.io.jsonlines import parse_lines
from tpt.io.storage import Folder

OBJECTS_PER_FETCH = 256


class Location(NamedTuple):
    """Where one line of the store is: its part (file or object), byte offset and length."""

    name: str
    offset: int
    length: int


class ThinkingStore:
    def __init__(self, directory: str | Path, run_id: str, flush_every_docs: int = 64, flush_every_seconds: float = 30.0):
        self.folder = Folder(directory)
        self.run_id = run_id
        self.flush_every_docs = flush_every_docs
        self.flush_every_seconds = flush_every_seconds
        self._writer = ""
        self._stream: BinaryIO | None = None  # the local part file; object stores get `_pending` lines instead
        self._pending: list[bytes] = []
        self._written = 0  # bytes in the local part file, or in the pending object
        self._flushes = 0
        self._unsynced = 0
        self._synced_at = 0.0
        self._lock = threading.Lock()

    def index(self) -> dict[tuple[str, str], Location]:
        """Where every finished result is, by (request id, fingerprint)."""
        done: dict[tuple[str, str], Location] = {}
        for location, entry in scan(self.folder):
            if "raw" in entry:
                done.setdefault((entry["id"], entry["key"]), location)
        return done

    def fetch(self, locations: list[Location]) -> list[dict[str, Any]]:
        """The entries at `locations`, in order; read in one call, concurrently where the filesystem can."""
        if not locations:
            return []
        paths = [self.folder.path(location.name) for location in locations]
        starts = [location.offset for location in locations]
        ends = [location.offset + location.length for location in locations]
        lines = self.folder.fs.cat_ranges(paths, starts, ends, on_error="raise")
        return [json.loads(line) for line in lines]

    def open(self, **header: Any) -> None:
        """Start this writer with a header line (its start time and `header`)."""
        self._writer = f"{self.run_id}.{os.getpid()}.{secrets.token_hex(4)}"
        if self.folder.is_local:
            Path(self.folder.root).mkdir(parents=True, exist_ok=True)
            self._stream = open(self.folder.path(f"{self._writer}.jsonl"), "xb")
        self._synced_at = time.monotonic()
        self.append({"started": time.time(), **header})

    def append(self, entry: dict[str, Any]) -> Location:
        """Store one line and say where it is: locally it is in the OS when this returns; it is durable,
        and readable at its location on an object store, after the next flush."""
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            if self._stream is not None:
                location = Location(f"{self._writer}.jsonl", self._written, len(line))
                self._stream.write(line)
                self._stream.flush()
            else:
                location = Location(f"{self._writer}.{self._flushes:06d}.jsonl", self._written, len(line))
                self._pending.append(line)
            self._written += len(line)
            self._unsynced += 1
            if self._unsynced >= self.flush_every_docs or time.monotonic() - self._synced_at >= self.flush_every_seconds:
                self._sync()
            return location

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
            with self.folder.staged_file(f"{self._writer}.{self._flushes:06d}.jsonl") as local:
                Path(local).write_bytes(b"".join(self._pending))
            self._pending, self._written, self._flushes = [], 0, self._flushes + 1
        self._unsynced = 0
        self._synced_at = time.monotonic()


def read_entries(directory: str | Path, run_id: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(writer, entry) for every complete line under `directory` (of one run if `run_id` is given)."""
    for location, entry in scan(Folder(directory), run_id):
        yield ".".join(location.name.split(".")[:3]), entry


def scan(folder: Folder, run_id: str | None = None) -> Iterator[tuple[Location, dict[str, Any]]]:
    """(location, entry) for every complete line of the store's parts (of one run if `run_id` is given)."""
    for name, lines in _part_lines(folder, folder.glob(f"{run_id}.*.jsonl" if run_id else "*.jsonl")):
        for offset, length, entry in parse_lines(lines, folder.url_of(name)):
            yield Location(name, offset, length), entry


def _part_lines(folder: Folder, names: list[str]) -> Iterator[tuple[str, Iterable[bytes]]]:
    """Each part's lines: local files streamed; objects (one small one per flush) fetched OBJECTS_PER_FETCH at a time."""
    if folder.is_local:
        for name in names:
            with open(folder.path(name), "rb") as stream:
                yield name, stream
        return
    for start in range(0, len(names), OBJECTS_PER_FETCH):
        chunk = names[start:start + OBJECTS_PER_FETCH]
        for name, data in zip(chunk, folder.read_many(chunk)):
            yield name, data.splitlines(keepends=True)
