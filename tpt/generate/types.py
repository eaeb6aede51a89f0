"""What every generation backend takes and returns, so stages and commands never depend on one backend."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tpt.assets import resolve_model_path
from tpt.config import GenerateConfig

OnDone = Callable[["Completion"], None]


@dataclass(frozen=True)
class Request:
    """One generation: a chat conversation (chat models) or a plain prompt (base models)."""

    id: str  # the key its result is stored under (a document id, or id#k for the k-th sample)
    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None
    max_new_tokens: int | None = None  # this request's budget; None: the config's `max_new_tokens`

    def budget(self, default: int) -> int:
        """The new tokens this request may generate: its own budget, or `default` (the config's)."""
        return self.max_new_tokens or default


@dataclass
class Completion:
    id: str
    text: str  # raw model output ("" when failed)
    finish_reason: str  # "stop", "length", "unknown" (the server did not say, within the budget) or "error"
    prompt_tokens: int = 0
    output_tokens: int = 0  # 0 when the backend cannot tell (the stage then counts with the teacher tokenizer)
    retries: int = 0
    error: str | None = None  # why it failed, for a permanent failure
    server: str | None = None  # the server that answered (openai backend)
    failed_at: list[str] = field(default_factory=list)  # the server of each failed attempt before it, in order
    # what was put right in a server's answer (tpt.generate.answers); an in-process model needs none of it
    characters_replaced: int = 0  # invalid code points (lone surrogates, bytes that were not UTF-8) now U+FFFD
    over_budget: bool = False  # the answer ran past its byte cap: read no further, its text is what came before
    usage_invalid: bool = False  # the server's token counts were not counts: the stage counts with the teacher's tokenizer


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
        from tpt.generate.window import Window

        window = Window(self, max(len(requests), 1))
        window.submit(list(enumerate(requests)))
        done = dict(window.drain())
        return [done[i] for i in range(len(requests))]


def request_seed(seed: int, request_id: str) -> int:
    """A per-request sampling seed: the same request samples the same way on every rerun and worker."""
    digest = hashlib.blake2b(f"{seed}\0{request_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def failed(request: Request, error: str, retries: int = 0) -> Completion:
    """The completion of a request that could not be generated, with the reason."""
    return Completion(request.id, "", "error", retries=retries, error=error)
