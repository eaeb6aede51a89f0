"""OUT/.lock: one run at a time writes a folder, from its start until it has published.

The lock is created atomically with its content: on a local (or shared) disk
by a hard link, which fails if the name exists (O_EXCL's guarantee, and it
never shows a half-written lock); at a URL by fsspec's exclusive create
(`fs.open(path, "xb")`, a conditional write: gcsfs sends ifGenerationMatch=0),
so of two runs that start at once exactly one takes it. The other is refused,
naming the holder. (A filesystem whose "xb" does not refuse an existing file
gives no more than the old read-then-write.)

A run's driver holds the lock and refreshes it while it lasts. A run submitted
to Slurm hands it over to its jobs (`hand_over`): the lock then names them,
and the run's last job releases it once it has published (`release`). A lock
is stale, and taken over by the next run, when its holder is gone: a driver
whose process is gone (same host) or that stopped refreshing it for
`stale_after` seconds (another host), or Slurm jobs of which none is queued or
running any more (a run that failed or was cancelled). Taking a stale lock
over happens under OUT/.lock.breaking, itself created atomically, so two runs
that find the same stale lock never remove the lock one of them has just taken.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from datetime import datetime
from pathlib import Path

from tpt.io.storage import Folder
from tpt.slurm import SlurmJob, SlurmUnavailable, still_queued

log = logging.getLogger(__name__)

LOCK = ".lock"
BREAKING = ".lock.breaking"  # held for the milliseconds it takes to remove a stale lock
BREAKING_STALE_SECONDS = 60.0  # a breaker killed in those milliseconds leaves it: older than this, it is removed
ATTEMPTS = 50


class RunLock:
    """OUT/.lock: who is writing this folder (host, pid, start time, token; or the Slurm jobs it was handed to)."""

    def __init__(self, folder: Folder, refresh_every: float = 30.0, stale_after: float = 300.0):
        self.folder, self.refresh_every, self.stale_after = folder, refresh_every, stale_after
        self.token = secrets.token_hex(8)  # what the run's own jobs know it by (`release`)
        self.mine = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "token": self.token}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.handed_over = False

    def __enter__(self) -> RunLock:
        self.acquire()
        self._thread = threading.Thread(target=self._refresh, name="tpt-lock", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop_refreshing()
        if not self.handed_over:
            release(self.folder, self.token)

    def acquire(self) -> None:
        """Take the lock, or raise FileExistsError naming the run that holds it."""
        for _ in range(ATTEMPTS):
            if create_exclusive(self.folder, LOCK, json.dumps(self.mine | {"refreshed": time.time()})):
                return
            holder = self.holder()
            if holder is not None and not self.is_stale(holder):
                raise FileExistsError(f"{self.folder.url} is being written by another run ({describe(holder)}); wait for it, "
                                      f"or remove {self.folder.url_of(LOCK)} if that run is gone")
            self._break(holder)
        raise FileExistsError(f"{self.folder.url}: could not take {LOCK} in {ATTEMPTS} attempts (other runs keep taking it)")

    def hand_over(self, jobs: list[SlurmJob]) -> None:
        """The run goes on in Slurm jobs: the lock names them, and the run's last job releases it."""
        self._stop_refreshing()
        self._rewrite(self.mine | {"refreshed": time.time(), "slurm_jobs": [job.to_dict() for job in jobs]})
        self.handed_over = True

    def holder(self) -> dict | None:
        """What the lock says (see `read_lock`)."""
        return read_lock(self.folder, LOCK)

    def is_stale(self, holder: dict) -> bool:
        """Whether the run that wrote `holder` is gone (see the module's docstring)."""
        if not holder:  # not a lock any run wrote (they appear whole): no run can be holding it
            return True
        if holder.get("slurm_jobs"):
            ids = [job_id for job in holder["slurm_jobs"] for job_id in job["ids"]]
            try:
                return not still_queued(ids)
            except SlurmUnavailable as error:
                log.warning("%s: cannot tell whether Slurm jobs %s still run: %s", self.folder.url_of(LOCK), ",".join(ids), error)
                return False
        if time.time() - holder.get("refreshed", 0) > self.stale_after:
            return True
        return holder.get("host") == socket.gethostname() and not _alive(holder.get("pid", 0))

    def _break(self, stale: dict | None) -> None:
        """Remove `stale` if it is still the lock, holding BREAKING meanwhile; else leave both to the next attempt."""
        if stale is None:  # released since we tried: try again
            return
        if not create_exclusive(self.folder, BREAKING, json.dumps(self.mine | {"refreshed": time.time()})):
            breaker = read_lock(self.folder, BREAKING)
            if breaker is None or time.time() - breaker.get("refreshed", 0) > BREAKING_STALE_SECONDS:
                self.folder.remove(BREAKING)
            else:
                time.sleep(0.05)  # another run is breaking it this very moment
            return
        try:
            if self.holder() == stale:
                log.warning("%s: taking over the lock of a run that is gone (%s)", self.folder.url, describe(stale))
                self.folder.remove(LOCK)
        finally:
            self.folder.remove(BREAKING)

    def _rewrite(self, content: dict) -> None:
        """Replace the lock's content, if it is still ours: one released by the run's finalize task stays released, and
        one taken over since (this run was thought gone) is left to its new holder."""
        holder = self.holder()
        if holder is None:
            return
        if holder.get("token") != self.token:
            log.warning("%s: another run took this run's lock over (%s)", self.folder.url_of(LOCK), describe(holder))
            return
        self.folder.write_text(LOCK, json.dumps(content))

    def _refresh(self) -> None:
        while not self._stop.wait(self.refresh_every):
            self._rewrite(self.mine | {"refreshed": time.time()})

    def _stop_refreshing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def release(folder: Folder, token: str) -> None:
    """Remove the lock if the run known by `token` holds it (its driver at its end, or its last Slurm job)."""
    holder = read_lock(folder, LOCK)
    if holder is not None and holder.get("token") == token:
        folder.remove(LOCK)


def create_exclusive(folder: Folder, name: str, text: str) -> bool:
    """Create `name` holding `text`, atomically, unless it exists; False if it does."""
    if folder.is_local:
        target = Path(folder.path(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        written = target.with_name(f"{target.name}.tmp{os.getpid()}.{secrets.token_hex(4)}")
        written.write_text(text, encoding="utf-8")
        try:
            os.link(written, target)  # fails if the name exists: the file appears whole, or not at all
        except FileExistsError:
            return False
        finally:
            written.unlink()
        return True
    try:
        with folder.fs.open(folder.path(name), "xb") as stream:
            stream.write(text.encode("utf-8"))
    except FileExistsError:
        return False
    return True


def read_lock(folder: Folder, name: str) -> dict | None:
    """What a lock file says; None if there is none, {} for one no run could have written (not a JSON object)."""
    try:
        content = folder.read_json(name)
    except FileNotFoundError:
        return None
    except ValueError:
        return {}
    return content if isinstance(content, dict) else {}


def describe(holder: dict) -> str:
    """`host H, pid P, started T`, or the Slurm jobs the run was handed to."""
    started = datetime.fromtimestamp(holder.get("started", 0)).isoformat(sep=" ", timespec="seconds")
    if holder.get("slurm_jobs"):
        jobs = ", ".join(f"{job['name']} {':'.join(job['ids'])}" for job in holder["slurm_jobs"])
        return f"Slurm jobs {jobs}, submitted from host {holder.get('host')} at {started}"
    return f"host {holder.get('host')}, pid {holder.get('pid')}, started {started}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
