"""The generation backend: a teacher that takes requests and hands back each completion when it is finished."""

from __future__ import annotations

from pathlib import Path

from tpt.assets import resolve_model_path
from tpt.config import GenerateConfig
from tpt.generate.types import Completion, OnDone, Request
from tpt.generate.window import Window


class Backend:
    """A teacher that takes requests one at a time and hands back each completion when it is finished.

    `submit` never waits for generation: the backend keeps its own thread (an event loop, a generation
    loop) and calls `on_done` from there, exactly once per request, failures included. Callers that keep
    a window of requests in flight build on `submit`; callers with a whole batch call `generate`.
    """

    config: GenerateConfig

    def template_folder(self, teacher_tokenizer: Path) -> Path:
        """The model folder whose chat template decides chat or plain prompts: the model's own, where it runs here."""
        return resolve_model_path(self.config.model)

    def devices(self, workers: int) -> int:
        """The accelerators this run's generation held, for its cost estimate: one per worker for an in-process model."""
        return workers

    def check(self) -> None:
        """In a run's driver, before anything is written: fail now on what would fail in every worker.
        In-process teachers are loaded only in the workers, so by default there is nothing to check."""

    def setup(self) -> None:
        """Load the model or open connections; once per worker process (repeat calls do nothing)."""

    def submit(self, requests: list[Request], on_done: OnDone) -> None:
        """Start generating `requests` (submitted together, so a batching backend may batch them)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the backend's thread and release the model or connections."""

    def generate(self, requests: list[Request]) -> list[Completion]:
        """One completion per request, in the same order; failures are completions with finish_reason "error"."""
        window = Window(self, max(len(requests), 1))
        window.submit(list(enumerate(requests)))
        done = dict(window.drain())
        return [done[i] for i in range(len(requests))]
