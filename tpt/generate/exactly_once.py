"""Exactly-once generation: each request is answered by the teacher once, whatever kills and reruns come between.

The argument, in the order it happens:

1. A worker starts by indexing the store (OUT/thinking/: every answer any run kept, by the fingerprint of what it
   asked and of what its text asks normalised; tpt.generate.store). A request with a fingerprint there is read
   back, never sent (`claim` -> STORED).
2. Otherwise the first stream of the worker to claim it sends it (SEND), and from then on it is in flight for every
   stream of that worker: a stream that claims it meanwhile (a bundle retried while the failed attempt's requests
   are still out) follows it (FOLLOW), and its window gets the same answer. Nothing in a worker is sent twice.
3. An answer is appended to the store the moment it arrives, before any stream sees it (`keep`); on a local disk
   the line is then in the OS, so a kill after that point cannot lose it, and `flush` makes it durable. Only then
   is it handed to the streams that wait for it, and the request stops being in flight.
4. Across workers, an engine gives each document to one task (by id), and deduplication carries the copies of a
   text to the task of their kept document, so two workers never hold the same request at once.
5. A kill loses exactly the requests in flight: the rerun's index lacks them (1), and asks again for them only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import Enum
from typing import Any

from tpt.generate.samples import Pending
from tpt.generate.store import Location, ThinkingStore
from tpt.generate.window import Window


class Claim(Enum):
    """What a stream does with a request (see the module, 1 and 2)."""

    STORED = "stored"  # read its answer back from the store
    SEND = "send"  # send it: it is this stream's, and in flight for the whole worker until kept
    FOLLOW = "follow"  # nothing: another stream has it in flight, and this stream's window gets its answer too


class Answers:
    """One worker's answers: the store and the requests in flight, shared by the worker's streams (Beam runs several
    at once, in threads)."""

    def __init__(self, store: ThinkingStore, longest: int):
        """`longest`: the most bytes a stored answer within the run's budgets takes (longer ones are asked again)."""
        self._store = store
        self._stored = store.index(longest)  # where each stored answer is; the texts stay in the store
        self._in_flight: dict[str, list[Callable[[Any], None]]] = {}  # by fingerprint: the windows that follow it
        self._lock = threading.Lock()

    def claim(self, pending: Pending, window: Window) -> tuple[Claim, Location | None]:
        """What `window`'s stream does with `pending`, and where its answer is when it is stored."""
        key = pending.fingerprint
        with self._lock:
            for stored in pending.keys:
                if stored in self._stored:
                    return Claim.STORED, self._stored[stored]
            if key in self._in_flight:
                self._in_flight[key].append(window.expect(pending))
                return Claim.FOLLOW, None
            self._in_flight[key] = []
            return Claim.SEND, None

    def keep(self, pending: Pending, entry: dict[str, Any]) -> dict[str, Any]:
        """Store an answer at once, then release it to the streams that follow it; runs in the backend's thread."""
        location = self._store.append(entry)
        with self._lock:
            if "raw" in entry:
                self._stored.update(dict.fromkeys(pending.keys, location))  # a retried bundle in this worker reads it back
            followers = self._in_flight.pop(pending.fingerprint, [])
        for follow in followers:
            follow(entry)
        return entry

    def read(self, locations: list[Location]) -> list[dict[str, Any]]:
        """Stored answers, in the order of `locations`."""
        return self._store.fetch(locations)

    def flush(self) -> None:
        """Make every answer kept so far durable, on a disk or an object store."""
        self._store.flush()

    def close(self) -> None:
        self._store.close()
