"""What every generation backend takes and returns (tpt.generate.backend), so stages never depend on one backend."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

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


def request_seed(seed: int, request_id: str) -> int:
    """A per-request sampling seed: the same request samples the same way on every rerun and worker."""
    digest = hashlib.blake2b(f"{seed}\0{request_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def failed(request: Request, error: str, retries: int = 0) -> Completion:
    """The completion of a request that could not be generated, with the reason."""
    return Completion(request.id, "", "error", retries=retries, error=error)
