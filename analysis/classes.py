"""The class axes of Figure 4 (domain, audience, reasoning intensity) and the order they are shown in.

Labels come from whatever the classify stage wrote; tpt never depends on their
exact strings. A missing or blank label is the class `unknown`. Reasoning
levels are ordered none < basic < intermediate < advanced when present
(matched on the label's first word, any case), audiences from general public to
expert likewise; every other class follows by mean thinking length, longest first.
"""

from __future__ import annotations

from typing import Any

UNKNOWN = "unknown"
REASONING_LEVELS = {"none": 0, "no": 0, "basic": 1, "intermediate": 2, "advanced": 3}
AUDIENCE_LEVELS = (("general", 0), ("public", 0), ("school", 1), ("k-12", 1), ("k12", 1), ("undergrad", 2), ("graduate", 3), ("expert", 3))


def label_sql(column: str) -> str:
    """The SQL expression of a column's class: the label, or 'unknown' when missing or blank."""
    return f"coalesce(nullif(trim({column}), ''), '{UNKNOWN}')"


def class_of(label: str | None) -> str:
    """The class of a label in Python, as `label_sql` says it in SQL."""
    return (label or "").strip() or UNKNOWN


def reasoning_level(label: str) -> int | None:
    """0 (none) .. 3 (advanced) for a reasoning-intensity label, None for any other label."""
    words = label.strip().lower().split()
    return REASONING_LEVELS.get(words[0]) if words else None


def audience_level(label: str) -> int | None:
    lowered = label.strip().lower()
    return next((level for key, level in AUDIENCE_LEVELS if lowered.startswith(key)), None)


LEVELS = {"reasoning": reasoning_level, "audience": audience_level}


def order_classes(axis: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The class rows of one axis in display order: known levels first, then by mean thinking, unknown last."""
    level = LEVELS.get(axis, lambda label: None)

    def key(row: dict[str, Any]) -> tuple:
        rank = level(row["class"])
        mean = row.get("thinking_mean")
        return (row["class"] == UNKNOWN, rank is None, rank or 0, -(mean or 0), row["class"])

    return sorted(rows, key=key)


def top_over_none(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean thinking of the highest reasoning level present over that of level none (the paper: ~1.5x)."""
    levels = [(reasoning_level(row["class"]), row) for row in rows if row["class"] != UNKNOWN]
    levels = [(rank, row) for rank, row in levels if rank is not None and row["thinking_mean"] is not None]
    none = next((row for rank, row in levels if rank == 0), None)
    top = max(((rank, row) for rank, row in levels if rank > 0), key=lambda item: item[0], default=None)
    if none is None or top is None or not none["thinking_mean"]:
        return None
    return {"top": top[1]["class"], "none": none["class"], "ratio": top[1]["thinking_mean"] / none["thinking_mean"]}
