"""Keep one document per id: the rest are set aside as duplicates, never written twice."""

from __future__ import annotations

from tpt.schema import Record, Reject

STAGE = "deduplicate"


def keep_one(records: list[Record]) -> tuple[Record, list[Reject]]:
    """The document kept among those sharing an id (the same one on every engine and rerun), and rejects for the others."""
    first, *others = sorted(records, key=lambda r: (r.source, r.text))
    return first, [
        Reject.of(r, STAGE, "duplicate_id", f"id {r.id!r} is already used by a document of source {first.source!r}")
        for r in others
    ]
