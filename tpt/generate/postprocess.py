"""From a teacher's raw output to the thinking t: cut at `</think>`, and flag what should not train a model.

Flags: `truncated` (the budget ran out before the thinking ended), `empty`
(nothing left after cleaning), `repetitive` (a degenerate loop: the share of
repeated word n-grams is over the configured threshold).
"""

from __future__ import annotations

THINK_START = "<think>"
THINK_END = "</think>"


def clean(raw: str) -> str:
    """The thinking in a raw output: without a leading `<think>`, cut at the first `</think>`."""
    text = raw.lstrip()
    if text.startswith(THINK_START):
        text = text[len(THINK_START):]
    return text.split(THINK_END, 1)[0].strip()


def finish_reason(raw: str, reported: str) -> str:
    """`stop` when the thinking ended (`</think>` seen, or the model stopped), else `length`."""
    return "stop" if THINK_END in raw else reported


def repetition_ratio(text: str, n: int) -> float:
    """The share of word n-grams that repeat an earlier one: ~0 for prose, near 1 for a loop."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def flags(thinking: str, reason: str, ngram: int, threshold: float) -> list[str]:
    found = []
    if reason == "length":
        found.append("truncated")
    if not thinking:
        found.append("empty")
    elif repetition_ratio(thinking, ngram) > threshold:
        found.append("repetitive")
    return found
