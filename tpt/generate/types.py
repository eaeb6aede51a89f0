"""What every generation backend takes and returns, so stages and commands never depend on one backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
    output_tokens: int = 0
    retries: int = 0
    error: str | None = None  # why it failed, for a permanent failure


class Backend(Protocol):
    def setup(self) -> None:
        """Load the model or open connections; once per worker process."""

    def generate(self, requests: list[Request]) -> list[Completion]:
        """One completion per request, in the same order; failures are completions with finish_reason "error"."""

    def close(self) -> None: ...
