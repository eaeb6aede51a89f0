"""What a teacher's answer may hold before a run keeps it: text any tokenizer takes, a bounded size, counts that are counts.

A server can answer anything, and one answer must never stop a run, nor every
rerun after it (the same seed asks the same question again). So the openai
backend reads at most `answer_bytes(budget)` of an answer, replaces the code
points no UTF-8 writer or tokenizer takes (lone surrogates, bytes that are not
UTF-8) with U+FFFD, and keeps a server's token count only when it is a whole
number in range; the think stage cuts the thinking at twice its budget.
"""

from __future__ import annotations

import math
import re
from typing import Any

BYTES_PER_TOKEN = 16  # generous: answers average 3-5 bytes a token, about 12 with every character \u-escaped
HEADROOM = 64 * 1024  # the rest of an answer: ids, finish reason, usage, what a server adds unasked
REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def answer_bytes(budget: int) -> int:
    """The most of an answer read for a budget of `budget` new tokens: twice the budget, at BYTES_PER_TOKEN."""
    return 2 * budget * BYTES_PER_TOKEN + HEADROOM


def stored_bytes(budget: int) -> int:
    """The longest stored result an answer within `answer_bytes(budget)` can make (JSON escapes a control character
    in 6 bytes); a longer one was stored whole, before answers were bounded."""
    return 6 * answer_bytes(budget) + HEADROOM


def sanitise(text: str) -> tuple[str, int]:
    """`text` with every lone surrogate (a JSON escape of half a pair, or a byte that was not UTF-8) replaced by
    U+FFFD, and how many were."""
    return (text, 0) if is_valid_text(text) else _SURROGATE.subn(REPLACEMENT, text)


def is_valid_text(text: str) -> bool:
    """Whether every tokenizer and UTF-8 writer takes `text` (UTF-8 encodes every code point but a lone surrogate,
    several times faster than a search for one)."""
    try:
        return text.isascii() or bool(text.encode("utf-8"))
    except UnicodeEncodeError:
        return False


def token_count(value: Any, most: int) -> int | None:
    """A token count as a server gave it, if it is one (a whole number from 0 to `most`); else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if 0 <= value <= most else None


def plausible_count(count: int, text: str, budget: int) -> bool:
    """Whether a server's output token count of `text` can stand: a count (not 0: unknown), at most the budget (a
    server that honours max_tokens gives no more), and enough tokens for the text (BYTES_PER_TOKEN characters each)."""
    return 0 < count <= budget and len(text) <= count * BYTES_PER_TOKEN
