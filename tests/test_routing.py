"""The openai backend's routing against real HTTP servers: a failing server is set aside and probed once at a time,
and servers listed in `generate.openai.base_urls_file` come and go while requests keep flowing."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.simulator import SimulatedServer
from tests.test_generate_openai import SERVED, FaultInjectionServer
from tpt.cli import main as cli
from tpt.config import GenerateConfig
from tpt.generate.backends import build_backend
from tpt.generate.routing import REREAD_SECONDS
from tpt.generate.types import Completion, Request


class HoldingServer(FaultInjectionServer):
    """A fault-injection server whose "hold" requests stay unanswered until the test releases them, each time with
    the action it names (so a probe request can be kept in flight while others are routed). `arrivals`: the
    time.monotonic() each request arrived."""

    def __init__(self, script: list[str]):
        self.arrivals: list[float] = []
        super().__init__(script, default="ok")
        self._release = asyncio.run_coroutine_threadsafe(self._queue(), self._loop).result()

    async def _queue(self) -> asyncio.Queue:
        return asyncio.Queue()

    def release(self, action: str) -> None:
        self._loop.call_soon_threadsafe(self._release.put_nowait, action)

    async def _answer(self, request):
        self.arrivals.append(time.monotonic())
        if self.script and self.script[0] == "hold":
            self.script[0] = await self._release.get()
        return await super()._answer(request)


class Feeder:
    """Keeps `window` requests in flight at a backend (a new one as each is answered) until `total` were sent,
    counting each completion by id."""

    def __init__(self, backend, window: int, total: int):
        self.backend, self.total, self.sent, self.stopped = backend, total, 0, False
        self.done: Counter[str] = Counter()
        self.completions: list[Completion] = []
        self._lock = threading.Lock()
        self._send(window)

    def stop(self) -> None:
        """Send nothing more (before the backend closes)."""
        with self._lock:
            self.stopped = True

    def _send(self, count: int) -> None:
        with self._lock:
            if self.stopped:
                return
            first, self.sent = self.sent, min(self.sent + count, self.total)
        self.backend.submit([Request(f"r{i}", prompt=f"document {i}") for i in range(first, self.sent)], self._on_done)

    def _on_done(self, completion: Completion) -> None:
        with self._lock:
            self.done[completion.id] += 1
            self.completions.append(completion)
        self._send(1)

    def answered(self) -> int:
        with self._lock:
            return len(self.completions)

    def answered_by(self, url: str) -> int:
        with self._lock:
            return sum(c.server == url.rstrip("/") for c in self.completions)


def test_a_set_aside_server_gets_one_probe_when_its_time_is_up_and_a_failed_probe_doubles_the_wait():
    """Three failures set the server aside for probe_after; then exactly one request reaches it, and while that probe
    is unanswered no other does; the probe fails: the next probe comes no sooner than twice probe_after; it succeeds:
    the server takes requests again."""
    probe_after = 1.0
    flaky = HoldingServer(["500", "500", "500", "hold", "hold"])
    steady = FaultInjectionServer([], delay=0.01)
    backend = build_backend(GenerateConfig(backend="openai", model=SERVED, base_urls=[flaky.url, steady.url],
                                           max_in_flight=4, timeout=30.0, retries=50))
    backend.setup()
    backend.router.probe_after = probe_after
    feeder = Feeder(backend, window=4, total=10**9)  # requests flow until the test ends
    try:
        wait_until(lambda: len(flaky.arrivals) >= 3, "three requests at the flaky server")
        probed = wait_until(lambda: len(flaky.arrivals) >= 4, "the first probe")
        assert flaky.arrivals[3] - flaky.arrivals[2] >= probe_after
        answered = feeder.answered_by(steady.url)
        wait_until(lambda: feeder.answered_by(steady.url) >= answered + 40, "40 more answers from the steady server")
        assert len(flaky.arrivals) == 4  # while the probe is out, no other request reaches the server

        flaky.release("500")  # the probe fails
        failed_at = time.monotonic()
        wait_until(lambda: len(flaky.arrivals) >= 5, "the second probe")
        assert flaky.arrivals[4] - failed_at >= 2 * probe_after  # the wait doubled
        assert flaky.arrivals[4] - probed >= 2 * probe_after

        flaky.release("ok")  # the second probe succeeds: the server is back, for every kind of request
        wait_until(lambda: len(flaky.arrivals) >= 15, "requests for the server taken back")
        feeder.stop()
        wait_until(lambda: feeder.answered() == feeder.sent, "the requests in flight answered")
        assert not [c for c in feeder.completions if c.finish_reason == "error"]
    finally:
        feeder.stop()
        backend.close()
        flaky.close()
        steady.close()


def write_servers(path: Path, *urls: str) -> None:
    """Rewrite the servers file whole, as the recipe's scripts do (a new file renamed over the old one)."""
    path.with_suffix(".new").write_text("".join(f"{url}\n" for url in urls))
    path.with_suffix(".new").replace(path)


def test_servers_that_come_and_go_through_the_servers_file_lose_no_request(tmp_path):
    """One server listed; a second added mid-run gets requests within seconds; the first killed (its URL still listed,
    as after a SIGKILL) and then removed: every request is answered exactly once, by one of the two."""
    servers = tmp_path / "servers file.txt"  # a path with a space
    with SimulatedServer(slots=8, rate=2000, mean_tokens=60, sigma=0.5) as first, \
            SimulatedServer(slots=8, rate=2000, mean_tokens=60, sigma=0.5) as second:
        write_servers(servers, "# the teacher servers, one URL a line", first.url)
        config = GenerateConfig(backend="openai", model="teacher", max_in_flight=16, timeout=30.0, retries=6,
                                openai={"base_urls_file": str(servers)})
        backend = build_backend(config)
        backend.setup()
        try:
            count = 1500
            feeder = Feeder(backend, window=16, total=count)
            wait_until(lambda: feeder.answered() >= 50, "50 answers from the first server")
            write_servers(servers, first.url, second.url)
            added = time.monotonic()
            used = wait_until(lambda: feeder.answered_by(second.url) > 0, "an answer from the added server")
            assert used - added < 3 * REREAD_SECONDS + 5  # within seconds
            assert feeder.answered() < count - 300  # still mid-run

            first.process.kill()  # its requests in flight fail: retried on the second
            killed_at = feeder.answered()
            wait_until(lambda: feeder.answered() >= killed_at + 100, "100 answers after the kill")
            write_servers(servers, second.url)  # the dead server leaves the file
            wait_until(lambda: feeder.answered() == count, "every request answered", deadline=120)
        finally:
            backend.close()
        assert feeder.done == dict.fromkeys((f"r{i}" for i in range(count)), 1)  # none lost, none twice
        assert not [c for c in feeder.completions if c.finish_reason == "error"]
        retried = [c for c in feeder.completions if c.failed_at]
        assert retried and {c.server for c in retried} == {second.url} and {u for c in retried for u in c.failed_at} == {first.url}
        assert second.stats()["requests"] == feeder.answered_by(second.url)  # the second asked once per answer it gave


def test_an_empty_servers_file_holds_requests_until_a_server_is_listed(tmp_path):
    servers = tmp_path / "servers.txt"
    servers.write_text("")
    with SimulatedServer(slots=4, instant=True) as server:
        backend = build_backend(GenerateConfig(backend="openai", model="teacher", openai={"base_urls_file": str(servers)}))
        backend.setup()
        try:
            feeder = Feeder(backend, window=5, total=5)
            write_servers(servers, server.url)
            wait_until(lambda: feeder.answered() == 5, "the five requests answered")
        finally:
            backend.close()
        assert {c.finish_reason for c in feeder.completions} == {"stop"}


def test_a_listed_servers_credentials_are_never_logged(tmp_path, caplog):
    """A servers file may list a URL with a user and password: the status line, the file's added and removed lines
    and the completions name the server with them redacted."""
    servers = tmp_path / "servers.txt"
    with SimulatedServer(slots=4, instant=True) as server:
        write_servers(servers, server.url.replace("http://", "http://alice:s3cr3t@"))
        backend = build_backend(GenerateConfig(backend="openai", model="teacher", openai={"base_urls_file": str(servers)}))
        with caplog.at_level(logging.INFO, logger="tpt"):
            backend.setup()
            try:
                feeder = Feeder(backend, window=2, total=2)
                wait_until(lambda: feeder.answered() == 2, "the two requests answered")
                status = backend.router.line()
                write_servers(servers, server.url)
                wait_until(lambda: "server removed" in caplog.text, "the credentialed URL removed")
            finally:
                backend.close()
    shown = server.url.replace("http://", "http://***@")
    assert status.startswith(f"{shown}: ") and {c.server for c in feeder.completions} == {shown}
    assert f"server removed: {shown}" in caplog.text and f"server added: {server.url}" in caplog.text
    assert "s3cr3t" not in caplog.text + status and "alice" not in caplog.text + status


def test_base_urls_and_base_urls_file_together_are_refused_naming_both(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text(
        "sources: [{name: a, path: a.jsonl}]\n"
        "generate: {backend: openai, openai: {base_urls: [http://127.0.0.1:1/v1], base_urls_file: servers.txt}}\n")
    assert cli(["run", str(tmp_path / "config.yaml"), "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "generate.openai: Value error, base_urls and base_urls_file are both set; keep one" in error


def test_a_servers_file_that_does_not_exist_fails_before_the_run(tmp_path):
    backend = build_backend(GenerateConfig(backend="openai", model="teacher",
                                           openai={"base_urls_file": str(tmp_path / "missing.txt")}))
    with pytest.raises(FileNotFoundError, match=r"base_urls_file: .*missing.txt: no such file \(servers add their URLs"):
        backend.check()
