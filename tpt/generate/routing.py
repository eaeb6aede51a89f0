"""Which server gets the next request: the one with the fewest requests outstanding.

Thinking lengths are long-tailed, so round-robin leaves one server idle while
another queues behind its 8k-token stragglers; least-outstanding sends work to
whichever server frees up first. A server that fails `set_aside_after` times in
a row is set aside for `probe_after` seconds (doubling while it keeps failing),
then gets one probe request: a success takes it back, a failure sets it aside
again. So one bad node cannot stall a run, and a node that recovers rejoins it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

MAX_SET_ASIDE = 300.0  # seconds: a server that failed for long is still probed every 5 minutes


@dataclass
class Server:
    url: str
    in_flight: int = 0
    finished: int = 0
    failures: int = 0  # failed attempts (each retry counts)
    output_tokens: int = 0
    failing: int = 0  # failures in a row
    set_aside_until: float = 0.0
    probing: bool = False  # a probe request is out: no other request until it answers
    started: float = field(default_factory=time.monotonic)

    def usable(self, now: float) -> bool:
        return not self.probing and self.set_aside_until <= now

    def describe(self, now: float) -> str:
        rate = self.output_tokens / max(now - self.started, 1e-9)
        state = f", set aside {self.set_aside_until - now:.0f} s more" if self.set_aside_until > now else ""
        return f"{self.url}: {self.in_flight} in flight, {rate:,.0f} tokens/s, {self.finished:,} done, {self.failures:,} failed{state}"


class Router:
    def __init__(self, urls: list[str], set_aside_after: int = 3, probe_after: float = 10.0):
        self.servers = [Server(url.rstrip("/")) for url in urls]
        self.set_aside_after = set_aside_after
        self.probe_after = probe_after

    def pick(self) -> Server:
        """The usable server with the fewest requests outstanding. One whose time set aside is up gets this
        request as its probe; when none is usable, the one whose time ends first (requests must go somewhere)."""
        now = time.monotonic()
        usable = [s for s in self.servers if s.usable(now)]
        if usable:
            server = min(usable, key=lambda s: s.in_flight)
            server.probing = server.set_aside_until > 0
        else:
            server = min(self.servers, key=lambda s: s.set_aside_until)
        server.in_flight += 1
        return server

    def answered(self, server: Server, output_tokens: int = 0) -> None:
        """The server answered (a completion, or a permanent error about the request): it is up."""
        server.in_flight -= 1
        server.finished += 1
        server.output_tokens += output_tokens
        server.failing, server.set_aside_until, server.probing = 0, 0.0, False

    def failed(self, server: Server) -> None:
        """A retryable failure (5xx, 429, timeout, dropped connection) at `server`."""
        server.in_flight -= 1
        server.failures += 1
        server.failing += 1
        if server.probing or server.failing >= self.set_aside_after:
            backoff = self.probe_after * 2 ** max(server.failing - self.set_aside_after, 0)
            server.set_aside_until = time.monotonic() + min(backoff, MAX_SET_ASIDE)
        server.probing = False

    def line(self) -> str:
        now = time.monotonic()
        return "; ".join(s.describe(now) for s in self.servers)
