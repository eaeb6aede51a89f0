"""Progress of long work: documents/s, tokens/s and an ETA, per worker and for the whole run.

Each worker's `Progress` logs its own line and, given a beacon folder
(OUT/.progress/, on disk or at a URL), also writes its counts there. The
driver's `RunProgress` reads every beacon and logs one line for the run: how
much of the input is read, and per stage the documents done, the rate and an
ETA. Until the input is read whole, a stage's total is estimated from the
documents read so far and the share of input bytes they came from. The run's
plan (stages, input size) is kept beside the beacons, so `tpt progress OUT`
shows the same line for a run no driver follows (Slurm jobs).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tpt.io.output import OutputLayout
from tpt.io.read import input_bytes
from tpt.io.storage import Folder

if TYPE_CHECKING:
    from tpt.config import PipelineConfig

log = logging.getLogger("tpt.progress")  # and its children, e.g. tpt.progress.openai: a backend's own progress lines

BEACONS = ".progress"  # OUT/.progress/: one small JSON file per worker counter, and the run's plan
PLAN = "plan.json"
BEACON_SECONDS = 15.0  # how often a worker rewrites a changed beacon: few writes, even on an object store


def progress_to_stderr() -> None:
    """Progress lines straight to stderr, in the driver and in every worker process alike, whatever logging an engine
    sets up in its workers (Beam's forwards and filters theirs): set up by a process's first counter, once."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


class Progress:
    """Counts work and logs a line at most every `interval` seconds; with `beacons`, also writes its counts there."""

    def __init__(self, name: str, total: int | None = None, interval: float = 5.0, beacons: str | None = None):
        progress_to_stderr()
        self.name = name
        self.total = total
        self.interval = interval
        self.docs = self.tokens = self.bytes = 0
        self.started = time.monotonic()
        self._started_at = self._updated_at = time.time()
        self._last_log = self.started
        self._beacons = Folder(beacons) if beacons else None
        self._beacon = f"{name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(3)}.json"

    def update(self, docs: int, tokens: int = 0, bytes_read: int = 0) -> None:
        """Count work done: documents, tokens made, and bytes of input read."""
        self.docs += docs
        self.tokens += tokens
        self.bytes += bytes_read
        self._updated_at = time.time()
        if self._beacons is not None:
            _BEACON_WRITER.mark(self)
        now = time.monotonic()
        if now - self._last_log >= self.interval:
            self._last_log = now
            log.info(self.line())

    def done(self) -> None:
        """A worker's task is over: write its counts now, for a task's process may end without exit handlers
        (a datatrove worker pool's) before the beacon thread's next round."""
        if self._beacons is not None:
            self.write_beacon()

    def write_beacon(self) -> None:
        """Best effort: a failed write is logged, and the next change writes the counts again."""
        counts = {"stage": self.name, "docs": self.docs, "tokens": self.tokens, "bytes": self.bytes,
                  "started": self._started_at, "updated": self._updated_at}
        try:
            self._beacons.write_text(self._beacon, json.dumps(counts))
        except Exception as error:  # any filesystem's error: progress must never fail the work it reports on
            log.debug("progress beacon %s: %s", self._beacon, error)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.docs / elapsed
        parts = [f"{self.name}: {self.docs:,} docs", f"{rate:,.1f} docs/s"]
        if self.tokens:
            parts.append(f"{self.tokens / elapsed:,.0f} tokens/s")
        if self.bytes:
            parts.append(f"{self.bytes / 1e6 / elapsed:,.1f} MB/s")
        if self.total:
            parts.append(f"{100 * self.docs / self.total:.1f}%")
            if rate > 0:
                parts.append(f"ETA {_duration(max(self.total - self.docs, 0) / rate)}")
        return ", ".join(parts)


class _BeaconWriter:
    """One thread per process writes the beacons of the counters that changed, every BEACON_SECONDS,
    so a stage's last counts reach the driver even when no update follows them."""

    def __init__(self):
        self._changed: set[Progress] = set()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._at_exit = False

    def mark(self, progress: Progress) -> None:
        with self._lock:
            self._changed.add(progress)
            if self._thread is None or not self._thread.is_alive():  # none yet, or this is a forked child
                self._thread = threading.Thread(target=self._run, name="tpt-beacons", daemon=True)
                self._thread.start()
            if not self._at_exit:  # the last counts, when the process ends between two rounds
                atexit.register(self.flush)
                self._at_exit = True

    def _run(self) -> None:
        while True:
            time.sleep(BEACON_SECONDS)
            self.flush()

    def flush(self) -> None:
        """Write every changed beacon; when this returns, no write of an earlier change is still under way."""
        with self._flushing:
            with self._lock:
                changed, self._changed = self._changed, set()
            for progress in changed:
                progress.write_beacon()


_BEACON_WRITER = _BeaconWriter()  # its thread and exit hook start with the first counter that writes beacons


@dataclass
class StageCounts:
    docs: int = 0
    tokens: int = 0
    bytes: int = 0
    started: float = float("inf")  # wall time the stage's first counter started
    updated: float = 0.0  # and its last update


class RunProgress:
    """The run-wide progress line from the workers' beacons: in the driver every `interval` seconds, or on demand."""

    def __init__(self, beacons: str, stages: list[str], input_bytes: int, per_document: dict[str, int] | None = None,
                 interval: float = BEACON_SECONDS):
        progress_to_stderr()
        self.folder = Folder(beacons)
        self.stages = stages  # in pipeline order, "read" first
        self.input_bytes = input_bytes
        self.per_document = per_document or {}  # counted items per document, e.g. {"think": samples_per_document}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tpt-run-progress", daemon=True)

    @classmethod
    def of_run(cls, beacons: str) -> RunProgress:
        """The progress of the run whose plan is in `beacons`."""
        return cls(beacons, **Folder(beacons).read_json(PLAN))

    def start(self) -> None:
        """Clear what an earlier run left and write this run's plan."""
        self.folder.remove("")
        plan = {"stages": self.stages, "input_bytes": self.input_bytes, "per_document": self.per_document}
        self.folder.write_text(PLAN, json.dumps(plan))

    def __enter__(self) -> RunProgress:
        self.start()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        _BEACON_WRITER.flush()  # counters of workers in this process (one local worker) write nothing after this
        self.folder.remove("")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                counts = self.counts()
                if counts:  # none before the first beacon, or once a finalize step has cleared them
                    log.info(self.line(counts))
            except Exception as error:  # a beacon half-gone or unreadable, the store unreachable: the next round tries again
                log.debug("run progress: %s", error)

    def counts(self) -> dict[str, StageCounts]:
        counts: dict[str, StageCounts] = {}
        for name in self.folder.glob("*.json"):
            if name == PLAN:
                continue
            beacon = self.folder.read_json(name)
            stage = counts.setdefault(beacon["stage"], StageCounts())
            stage.docs += beacon["docs"]
            stage.tokens += beacon["tokens"]
            stage.bytes += beacon["bytes"]
            stage.started = min(stage.started, beacon["started"])
            stage.updated = max(stage.updated, beacon["updated"])
        return counts

    def line(self, counts: dict[str, StageCounts], eta: bool = True) -> str:
        """`run: read 40% of 1.2 GB, 1,000 docs; truncate 1,000 docs, 12.0 docs/s, 40%, ETA 0:03:28; ... | run ETA 0:10:00`;
        without `eta` (a run that no longer runs), the counts alone."""
        read = counts.get("read", StageCounts())
        share = min(read.bytes / self.input_bytes, 1.0) if self.input_bytes else 0.0
        documents = read.docs / share if share else None  # the input's documents, estimated until it is read whole
        parts, etas = [f"read {100 * share:.0f}% of {_size(self.input_bytes)}, {read.docs:,} docs"], []
        for name in self.stages[1:]:
            stage = counts.get(name)
            if stage is None:
                parts.append(f"{name} not started")
                etas.append(None)
                continue
            elapsed = max(stage.updated - stage.started, 1e-9)  # a finished stage keeps its rate
            rate = stage.docs / elapsed
            text = f"{name} {stage.docs:,} docs, {rate:,.1f} docs/s"
            if stage.tokens:
                text += f", {stage.tokens / elapsed:,.0f} tokens/s"
            left = None
            if documents and rate > 0:
                total = documents * self.per_document.get(name, 1)
                left = max(total - stage.docs, 0) / rate
                text += f", {100 * min(stage.docs / total, 1):.0f}%" + (f", ETA {_duration(left)}" if eta else "")
            parts.append(text)
            etas.append(left)
        line = "run: " + "; ".join(parts)
        if eta and etas and all(left is not None for left in etas):
            line += f" | run ETA {_duration(max(etas))}"
        return line


def track_run(config: PipelineConfig, stages: list[str], files: list[tuple[str, str]]) -> RunProgress:
    """The run-wide progress line of a pipeline run over `files` ((source, path) pairs) through `stages`, by name."""
    per_document = {"think": config.generate.samples_per_document} if config.generate else {}
    return RunProgress(OutputLayout(config.output.dir).url_of(BEACONS), ["read", *stages], input_bytes(files), per_document)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:,.1f} {unit}"
        count /= 1000
    return f"{count:,.1f} TB"
