"""OUT/.lock: one run at a time, even when two start at the same instant; a gone run's lock never blocks the next."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tpt.io.lock import BREAKING, LOCK, RunLock, release
from tpt.io.output import OutputLayout

TRIALS = 20


def dead_pid() -> int:
    """The pid of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(done.stdout)


def stale_lock(layout: OutputLayout) -> int:
    """What a run killed on this host leaves: its lock, naming a process that is gone (its pid, returned)."""
    pid = dead_pid()
    layout.write_text(LOCK, json.dumps({"host": socket.gethostname(), "pid": pid, "started": 0.0, "refreshed": 4e9, "token": "gone"}))
    return pid


def race(folders: list[str], barrier, results) -> None:
    """One contender: in each folder in turn, wait for the other at the barrier, then try to take the lock (and keep it).

    Its staleness check takes 10 ms, as asking Slurm or a remote store does (a stand-in for that latency): the two
    contenders then find a stale lock stale together, and a takeover that is not itself exclusive shows."""
    check = RunLock.is_stale

    def slow_check(self, holder):
        time.sleep(0.01)
        return check(self, holder)

    RunLock.is_stale = slow_check
    for folder in folders:
        barrier.wait(timeout=60)
        try:
            RunLock(OutputLayout(folder)).acquire()
            results.put((folder, os.getpid()))
        except FileExistsError:
            results.put((folder, None))


@pytest.mark.parametrize("left_by", ["nobody", "a killed run"])
def test_of_two_runs_that_race_for_the_lock_exactly_one_takes_it_every_time(tmp_path, left_by):
    """Two processes released together by a barrier, TRIALS times, into a free folder or one holding a stale lock."""
    folders = [str(tmp_path / f"out{trial}") for trial in range(TRIALS)]
    if left_by == "a killed run":
        for folder in folders:
            stale_lock(OutputLayout(folder))
    context = multiprocessing.get_context("spawn")  # fresh processes: the test's own threads are not forked
    barrier, results = context.Barrier(2), context.Queue()
    contenders = [context.Process(target=race, args=(folders, barrier, results)) for _ in range(2)]
    for process in contenders:
        process.start()
    outcomes = [results.get(timeout=120) for _ in range(2 * TRIALS)]
    for process in contenders:
        process.join(timeout=60)
    winners = {folder: [pid for f, pid in outcomes if f == folder and pid] for folder in folders}
    assert {folder: len(pids) for folder, pids in winners.items()} == dict.fromkeys(folders, 1)
    for folder, (pid,) in winners.items():
        assert OutputLayout(folder).read_json(LOCK)["pid"] == pid  # the lock names the winner
        assert not OutputLayout(folder).exists(BREAKING)


def test_threads_racing_for_a_lock_on_an_object_store_take_it_once():
    """memory:// refuses a second exclusive create (fs.open(..., "xb")), as gs:// and s3:// do."""
    layouts = [OutputLayout(f"memory://lock-race-{trial}") for trial in range(TRIALS)]
    barrier, won = threading.Barrier(2), []

    def contend():
        for layout in layouts:
            barrier.wait(timeout=60)
            try:
                RunLock(layout).acquire()
                won.append(layout.url)
            except FileExistsError:
                pass

    threads = [threading.Thread(target=contend) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(won) == sorted(layout.url for layout in layouts)


def test_a_second_run_into_the_folder_is_refused_naming_the_first(tmp_path):
    layout = OutputLayout(tmp_path)
    with RunLock(layout), pytest.raises(FileExistsError,
                       match=rf"being written by another run \(host {socket.gethostname()}, pid {os.getpid()}, started "), RunLock(layout):
        pass
    assert not layout.exists(LOCK)  # released


def test_a_killed_runs_lock_is_stale_and_taken_over(tmp_path):
    layout = OutputLayout(tmp_path)
    stale_lock(layout)
    with RunLock(layout):  # its process is gone
        assert layout.read_json(LOCK)["pid"] == os.getpid()
    layout.write_text(LOCK, json.dumps({"host": "another-host", "pid": 1, "started": 0.0, "refreshed": 0.0, "token": "t"}))
    with RunLock(layout):  # not refreshed for longer than stale_after
        pass
    layout.write_text(LOCK, "")  # no run writes this (locks appear whole)
    with RunLock(layout):
        pass
    layout.write_text(LOCK, json.dumps({"host": "another-host", "pid": 1, "started": 0.0, "refreshed": 4e9, "token": "t"}))
    with pytest.raises(FileExistsError, match="host another-host, pid 1"), RunLock(layout):
        pass


def test_only_the_run_holding_the_lock_releases_it(tmp_path):
    """A finalize task releases its own run's lock (by its token), never the lock of a run that took over since."""
    layout = OutputLayout(tmp_path)
    lock = RunLock(layout).__enter__()
    release(layout, "another run's token")
    assert layout.read_json(LOCK)["token"] == lock.token
    release(layout, lock.token)  # what the run's finalize task does once it has published
    assert not layout.exists(LOCK)
    second = RunLock(layout)
    second.acquire()  # free again: a second run takes it
    lock.__exit__(None, None, None)  # and the first one's driver, ending, leaves it be
    assert layout.read_json(LOCK)["token"] == second.token
