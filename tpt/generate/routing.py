"""Which server gets the next request: the one with the fewest requests outstanding, among those listed now.

Thinking lengths are long-tailed, so round-robin leaves one server idle while
another queues behind its 8k-token stragglers; least-outstanding sends work to
whichever server frees up first. A server that fails `set_aside_after` times in
a row is set aside for `probe_after` seconds (doubling while it keeps failing),
then gets one probe request: a success takes it back, a failure sets it aside
again. So one bad node cannot stall a run, and a node that recovers rejoins it.

The servers may come and go (`ServersFile`, generate.openai.base_urls_file):
`Router.update` makes a new list the one new requests go to. A server that
joins gets requests at once; one that leaves gets no new request, and those
in flight there finish, or fail and are retried on another, as on any failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from tpt.io.storage import Folder
from tpt.redact import redact

log = logging.getLogger(__name__)

MAX_SET_ASIDE = 300.0  # seconds: a server that failed for long is still probed every 5 minutes
REREAD_SECONDS = 2.0  # how often a servers file is read again: a new server gets requests within seconds


@dataclass
class Server:
    url: str
    shown: str = field(init=False)  # the URL as logs and stored results name it: its credentials redacted
    in_flight: int = 0
    finished: int = 0
    failures: int = 0  # failed attempts (each retry counts)
    output_tokens: int = 0
    failing: int = 0  # failures in a row
    set_aside_until: float = 0.0
    probing: bool = False  # a probe request is out: no other request until it answers
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        self.shown = redact(self.url)

    def usable(self, now: float) -> bool:
        return not self.probing and self.set_aside_until <= now

    def describe(self, now: float) -> str:
        rate = self.output_tokens / max(now - self.started, 1e-9)
        state = f", set aside {self.set_aside_until - now:.0f} s more" if self.set_aside_until > now else ""
        return f"{self.shown}: {self.in_flight} in flight, {rate:,.0f} tokens/s, {self.finished:,} done, {self.failures:,} failed{state}"


class NoServer(Exception):
    """No server was listed for as long as a request may wait."""


class Router:
    def __init__(self, urls: Iterable[str] = (), set_aside_after: int = 3, probe_after: float = 10.0):
        self.servers: list[Server] = []  # the servers listed now: new requests go to these
        self.set_aside_after = set_aside_after
        self.probe_after = probe_after
        self._listed = asyncio.Event()  # set while a server is listed
        self.update(urls)

    def update(self, urls: Iterable[str]) -> tuple[list[Server], list[Server]]:
        """Make `urls` the servers new requests go to; returns the servers (added, removed). A server that stays keeps
        its state (in flight, set aside); one that leaves keeps its requests in flight, and no new one reaches it."""
        wanted = list(dict.fromkeys(url.rstrip("/") for url in urls))
        listed = {server.url: server for server in self.servers}
        self.servers = [listed.get(url) or Server(url) for url in wanted]
        if self.servers:
            self._listed.set()
        else:
            self._listed.clear()
        return ([server for server in self.servers if server.url not in listed],
                [server for url, server in listed.items() if url not in wanted])

    def pick(self, avoid: Collection[str] = ()) -> Server | None:
        """The usable server with the fewest requests outstanding, preferring those not in `avoid` (where this request
        failed before). One whose time set aside is up gets this request as its probe; when none is usable, the one
        whose time ends first (requests must go somewhere). None when no server is listed."""
        now = time.monotonic()
        usable = [s for s in self.servers if s.usable(now)]
        usable = [s for s in usable if s.url not in avoid] or usable
        if usable:
            server = min(usable, key=lambda s: s.in_flight)
            server.probing = server.set_aside_until > 0
        elif self.servers:
            server = min(self.servers, key=lambda s: s.set_aside_until)
        else:
            return None
        server.in_flight += 1
        return server

    async def next(self, avoid: Collection[str] = (), wait: float = 600.0) -> Server:
        """`pick`, waiting up to `wait` seconds while no server is listed (servers that come and go)."""
        while (server := self.pick(avoid)) is None:
            try:
                await asyncio.wait_for(self._listed.wait(), wait)
            except asyncio.TimeoutError:
                raise NoServer(f"no server was listed for {wait:g} s") from None
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
        return "; ".join(s.describe(now) for s in self.servers) or "no server listed"


class ServersFile:
    """A file (a path or any fsspec URL) of server URLs, one per line; blank lines and `# comments` are skipped.

    Servers that are started and stopped as jobs of their own write it: each adds its URL once it answers and
    removes it as it exits (docs/thinking.md, "Servers that come and go"). The router follows it (`follow`).
    """

    def __init__(self, location: str, every: float = REREAD_SECONDS):
        folder, self.name = location.rsplit("/", 1) if "/" in location else (".", location)
        self.folder, self.location, self.every = Folder(folder), location, every
        self._skipped: set[str] = set()

    def read(self) -> list[str]:
        """The URLs listed now (a line that is not an http(s) URL is skipped, with a warning the first time)."""
        try:
            text = self.folder.read_text(self.name)
        except FileNotFoundError:
            raise FileNotFoundError(f"generate.openai.base_urls_file: {self.location}: no such file (servers add their URLs "
                                    "to it: create it, empty, before they start)") from None
        urls = []
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(("http://", "https://")):
                urls.append(line)
            elif line and line not in self._skipped:
                self._skipped.add(line)
                log.warning("%s: skipped %r: not an http:// or https:// URL", self.location, line)
        return urls

    async def follow(self, router: Router) -> None:
        """Re-read the file every `every` seconds and hand the router its servers; a read that fails (the file being
        replaced, the store unreachable) keeps the servers as they were, with a warning, until one succeeds."""
        failing = False
        while True:
            await asyncio.sleep(self.every)
            try:
                urls = await asyncio.to_thread(self.read)
            except Exception as error:  # any filesystem's error: the servers stay as they were
                if not failing:
                    log.warning("%s: cannot read it (%s: %s); the servers stay as they were", self.location,
                                type(error).__name__, error)
                failing = True
                continue
            failing = False
            added, removed = router.update(urls)
            for server in added:
                log.info("%s: server added: %s", self.location, server.shown)
            for server in removed:
                log.info("%s: server removed: %s (its requests in flight finish, or are retried on another)", self.location, server.shown)
