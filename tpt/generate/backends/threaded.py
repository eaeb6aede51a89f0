"""What the in-process backends share: a generation thread of their own that takes the requests submitted."""

from __future__ import annotations

import threading

from tpt.generate.backend import Backend
from tpt.generate.types import OnDone, Request


class ThreadedBackend(Backend):
    """`submit` queues requests from any thread; the backend's generation thread (`_run`) takes them with `_take`.

    A subclass loads its model in `setup`, then calls `_start`; `close` stops the thread (requests still
    waiting are abandoned) and then calls `_release`.
    """

    def _start(self, name: str) -> None:
        self._waiting: list[tuple[Request, OnDone]] = []
        self._closing = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, requests: list[Request], on_done: OnDone) -> None:
        self.setup()
        with self._wake:
            self._waiting += [(request, on_done) for request in requests]
            self._wake.notify()

    def close(self) -> None:
        if getattr(self, "_thread", None) is None:
            return
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()
        self._thread = None
        self._release()

    def _take(self, wait: bool) -> list[tuple[Request, OnDone]] | None:
        """Every request submitted since the last call (with `wait`, at least one); None once the backend closes."""
        with self._wake:
            if wait:
                self._wake.wait_for(lambda: self._waiting or self._closing)
            if self._closing:
                return None
            waiting, self._waiting = self._waiting, []
            return waiting

    def _run(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Drop the model."""
