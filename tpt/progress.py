"""Progress of long work: documents/s, tokens/s and, when the total is known, an ETA."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("tpt.progress")
# Progress lines go straight to stderr, in the driver and in every worker process alike,
# whatever logging an engine sets up in its workers (Beam's forwards and filters theirs).
if not log.handlers:
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class Progress:
    """Counts work and logs a line at most every `interval` seconds."""

    def __init__(self, name: str, total: int | None = None, interval: float = 5.0):
        self.name = name
        self.total = total
        self.interval = interval
        self.docs = 0
        self.tokens = 0
        self.started = time.monotonic()
        self._last_log = self.started

    def update(self, docs: int, tokens: int = 0) -> None:
        self.docs += docs
        self.tokens += tokens
        now = time.monotonic()
        if now - self._last_log >= self.interval:
            self._last_log = now
            log.info(self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.docs / elapsed
        parts = [f"{self.name}: {self.docs:,} docs", f"{rate:,.1f} docs/s"]
        if self.tokens:
            parts.append(f"{self.tokens / elapsed:,.0f} tokens/s")
        if self.total:
            remaining = max(self.total - self.docs, 0)
            parts.append(f"{100 * self.docs / self.total:.1f}%")
            if rate > 0:
                parts.append(f"ETA {_duration(remaining / rate)}")
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"
