"""A window of requests in flight on a backend, kept full by its caller and emptied as requests finish.

The caller submits requests while the window has room and takes back finished
completions, in the order they finish, whenever it likes; it waits only when
the window is full. So a continuous-batching server always has the next request
queued the moment one finishes, across the caller's batches, bundles and files.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from tpt.generate.types import Completion, OnDone, Request


class Submits(Protocol):
    """What a window needs of a backend (tpt.generate.backend): requests started, each completion handed back."""

    def submit(self, requests: list[Request], on_done: OnDone) -> None: ...


class Window:
    def __init__(self, backend: Submits, size: int, keep: Callable[[Any, Completion], Any] | None = None):
        """`keep(context, completion)` runs in the backend's thread as each completion arrives, and what it
        returns is handed back in the completion's place: the place to store a result, so that a kill after
        it cannot lose it."""
        self.backend = backend
        self.size = size
        self.keep = keep
        self.in_flight = 0
        self._finished: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()

    @property
    def room(self) -> int:
        return self.size - self.in_flight

    def submit(self, items: list[tuple[Any, Request]]) -> None:
        """Start each (context, request); the context comes back with its completion."""
        if not items:
            return
        contexts: dict[str, deque] = {}  # by request id; a caller's batch may repeat one
        for context, request in items:
            contexts.setdefault(request.id, deque()).append(context)
        self.in_flight += len(items)

        def done(completion: Completion) -> None:
            context = contexts[completion.id].popleft()
            try:
                self._finished.put((context, completion if self.keep is None else self.keep(context, completion)))
            except BaseException as error:  # storing failed (a full disk): the caller raises it, never waits forever
                self._finished.put((context, error))

        self.backend.submit([request for _, request in items], done)

    def expect(self, context: Any) -> Callable[[Any], None]:
        """Count a result in flight that another window's request will bring (the same request, sent once):
        the returned function hands it back here, with `context`."""
        self.in_flight += 1
        return lambda result: self._finished.put((context, result))

    def finished(self, wait: bool = False) -> list[tuple[Any, Any]]:
        """The (context, completion or what `keep` made of it) pairs finished so far; with `wait`, at least
        one while any is in flight."""
        items = []
        if wait and self.in_flight:
            items.append(self._finished.get())
        while True:
            try:
                items.append(self._finished.get_nowait())
            except queue.Empty:
                break
        self.in_flight -= len(items)
        for _, result in items:
            if isinstance(result, BaseException):
                raise result
        return items

    def drain(self) -> Iterator[tuple[Any, Any]]:
        """Every request still in flight, as each finishes."""
        while self.in_flight:
            yield from self.finished(wait=True)

