"""What every generation backend takes and returns, so stages and commands never depend on one backend."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from collections.abc import Callable
from typing import Protocol

OnDone = Callable[["Completion"], None]


@dataclass(frozen=True)
class Request:
    """One generation: a chat conversation (chat models) or a plain prompt (base models)."""

    id: str  # the key its result is stored under (a document id, or id#k for the k-th sample)
    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None


@dataclass
class Completion:
    id: str
    text: str  # raw model output ("" when failed)
    finish_reason: str  # "stop", "length", or "error"
    prompt_tokens: int = 0
    output_tokens: int = 0  # 0 when the backend cannot tell (the stage then counts with the teacher tokenizer)
    retries: int = 0
    error: str | None = None  # why it failed, for a permanent failure


class Backend(Protocol):
    def setup(self) -> None:
        """Load the model or open connections; once per worker process."""

    def generate(self, requests: list[Request], on_done: OnDone | None = None) -> list[Completion]:
        """One completion per request, in the same order; failures are completions with finish_reason "error".

        `on_done` is called with each completion as soon as it is finished (a resumable caller stores it there).
        """

    def close(self) -> None: ...


def request_seed(seed: int, request_id: str) -> int:
    """A per-request sampling seed: the same request samples the same way on every rerun and worker."""
    digest = hashlib.blake2b(f"{seed}\0{request_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def failed(request: Request, error: str, retries: int = 0) -> Completion:
    """The completion of a request that could not be generated, with the reason."""
    return Completion(request.id, "", "error", retries=retries, error=error)
