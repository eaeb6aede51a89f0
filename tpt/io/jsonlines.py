"""Resumable JSON-lines stores, on a local disk or behind any fsspec URL: what a run finished, kept for its rerun.

A store is a folder of parts, and each writer appends to parts of its own. On
a local or shared disk the writer appends to one file, `<writer>.jsonl`, and
each line reaches the OS as soon as it is appended, so a SIGKILL loses only
what was not appended yet; `fsync` at each flush bounds what a machine crash
can lose. Object stores (`gs://`, `s3://`) cannot append, so there each flush
uploads the lines since the last one as a new object `<writer>.<NNNNNN>.jsonl`,
and a kill loses what was not flushed yet. A last line cut short by a kill is
not an entry: it is skipped on reading, and dropped before a writer appends to
the same file again. A line that is not JSON stops the reading, unless the
store can do without it (`skipping`: a result or label made again).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from tpt.io.storage import Folder

OBJECTS_PER_FETCH = 256
PART_SUFFIX = re.compile(r"(\.\d{6})?\.jsonl$")

log = logging.getLogger(__name__)


class Location(NamedTuple):
    """Where one line of a store is: its part (file or object), byte offset and length."""

    name: str
    offset: int
    length: int


class JsonLinesStore:
    """One writer's appends to a store, and reads of every writer's lines.

    A flush happens every `flush_every_lines` lines or `flush_every_seconds`, whichever comes first, and when asked.
    """

    def __init__(self, directory: str | Path, flush_every_lines: float = math.inf, flush_every_seconds: float = math.inf):
        self.folder = Folder(directory)
        self.flush_every_lines = flush_every_lines
        self.flush_every_seconds = flush_every_seconds
        self._writer = ""
        self._stream: BinaryIO | None = None  # the local part file; object stores get `_pending` lines instead
        self._pending: list[bytes] = []
        self._written = 0  # bytes in the local part file, or in the pending object
        self._objects = 0  # objects this writer has uploaded, its earlier runs' included
        self._unflushed = 0
        self._flushed_at = 0.0
        self._lock = threading.Lock()

    def start_writing(self, writer: str) -> None:
        """Append from now on as `writer`, after whatever an earlier run of the same writer left."""
        self._writer = writer
        if self.folder.is_local:
            Path(self.folder.root).mkdir(parents=True, exist_ok=True)
            path = self.folder.path(f"{writer}.jsonl")
            self._stream = open(path, "ab")  # noqa: SIM115  (the writer's, open until `close`)
            with open(path, "rb") as written:  # drop a last line cut short, so appends start on a fresh line
                self._written = written.read().rfind(b"\n") + 1
            self._stream.truncate(self._written)
        else:
            self._objects = len(self.part_names(writer))
        self._flushed_at = time.monotonic()

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
                location = Location(f"{self._writer}.{self._objects:06d}.jsonl", self._written, len(line))
                self._pending.append(line)
            self._written += len(line)
            self._unflushed += 1
            if self._unflushed >= self.flush_every_lines or time.monotonic() - self._flushed_at >= self.flush_every_seconds:
                self._flush()
            return location

    def flush(self) -> None:
        """Make every line appended so far durable."""
        with self._lock:
            self._flush()

    def close(self) -> None:
        with self._lock:
            self._flush()
            if self._stream is not None:
                self._stream.close()
                self._stream = None

    def _flush(self) -> None:
        if self._stream is not None:
            os.fsync(self._stream.fileno())
        elif self._pending:
            with self.folder.staged_file(f"{self._writer}.{self._objects:06d}.jsonl") as local:
                Path(local).write_bytes(b"".join(self._pending))
            self._pending, self._written, self._objects = [], 0, self._objects + 1
        self._unflushed = 0
        self._flushed_at = time.monotonic()

    def part_names(self, writers: str = "*") -> list[str]:
        """The parts (`<writer>.jsonl`, `<writer>.<NNNNNN>.jsonl`) of the writers matching the glob pattern `writers`, sorted."""
        return [name for name in self.folder.glob("*.jsonl") if fnmatch.fnmatchcase(PART_SUFFIX.sub("", name), writers)]

    def scan(self, writers: str = "*", on_corrupt: Callable[[str], None] | None = None) -> Iterator[tuple[Location, dict[str, Any]]]:
        """(location, entry) for every complete line of the writers matching the glob pattern `writers`; a line that is
        not JSON is handed to `on_corrupt` (see `skipping`), or stops the scan."""
        for name, lines in self._part_lines(self.part_names(writers)):
            for offset, length, entry in parse_lines(lines, self.folder.url_of(name), on_corrupt):
                yield Location(name, offset, length), entry

    def fetch(self, locations: list[Location]) -> list[dict[str, Any]]:
        """The entries at `locations`, in order; read in one call, concurrently where the filesystem can."""
        if not locations:
            return []
        paths = [self.folder.path(location.name) for location in locations]
        starts = [location.offset for location in locations]
        ends = [location.offset + location.length for location in locations]
        lines = self.folder.fs.cat_ranges(paths, starts, ends, on_error="raise")
        return [json.loads(line) for line in lines]

    def _part_lines(self, names: list[str]) -> Iterator[tuple[str, Iterable[bytes]]]:
        """Each part's lines: local files streamed; objects (one small one per flush) fetched OBJECTS_PER_FETCH at a time."""
        if self.folder.is_local:
            for name in names:
                with open(self.folder.path(name), "rb") as stream:
                    yield name, stream
            return
        for start in range(0, len(names), OBJECTS_PER_FETCH):
            chunk = names[start:start + OBJECTS_PER_FETCH]
            for name, data in zip(chunk, self.folder.read_many(chunk)):
                yield name, data.splitlines(keepends=True)


def parse_lines(lines: Iterable[bytes], where: str | Path,
                on_corrupt: Callable[[str], None] | None = None) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(byte offset, byte length, entry) of every line that ends with its newline; a last line
    without one (a writer killed mid-write) is skipped. A line that is not JSON is described to `on_corrupt`
    and skipped, or, without one, stops the reading with an error. `where` names the file."""
    offset = 0
    for number, line in enumerate(lines, start=1):
        if not line.endswith(b"\n"):
            return
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            problem = f"{where}:{number}: corrupt line, not JSON ({error})"
            if on_corrupt is None:
                raise ValueError(f"{problem}; remove the line to go on") from None
            on_corrupt(problem)
        else:
            yield offset, len(line), entry
        offset += len(line)


def skipping(consequence: str) -> Callable[[str], None]:
    """An `on_corrupt` for a store that can do without a line: a warning naming the line and what follows."""
    return lambda problem: log.warning("%s: skipped, %s", problem, consequence)
