"""Documents set aside as duplicates, per source: every reject reason with "duplicate" in its name (duplicate_id,
duplicate_text, near_duplicate, ...), whatever stage set it aside, from the run's summary (which counts the
reject files by source, stage and reason)."""

from __future__ import annotations

from typing import Any

from tpt.analysis.runs import Run


def duplicates(run: Run) -> list[dict[str, Any]]:
    """Per source: documents read, duplicates by reason, all duplicates, and their share of the documents read."""
    rows = []
    for source, figures in sorted((run.summary.get("sources") or {}).items()):
        reasons: dict[str, int] = {}
        for by_reason in (figures.get("rejects") or {}).values():
            for reason, count in by_reason.items():
                if "duplicate" in reason:
                    reasons[reason] = reasons.get(reason, 0) + count
        total, read = sum(reasons.values()), figures.get("read")
        rows.append({"class": source, "read": read, "duplicates": total, "duplicate_share": total / read if read else None,
                     "reasons": dict(sorted(reasons.items()))})
    return rows
