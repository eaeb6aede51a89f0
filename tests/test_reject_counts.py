"""summary.json counts OUT/rejects/ without holding it: a run that set most of its corpus aside (duplicates, on a
real corpus) finishes in the memory of its counts, not of its rejects."""

from __future__ import annotations

import tracemalloc
from collections import Counter

from tpt.io.output import OutputLayout, RejectCounts, read_rejects, write_rejects
from tpt.schema import Reject

PARTS, ROWS = 2, 10_000  # of each source


def write_many_rejects(layout: OutputLayout) -> int:
    """PARTS reject parts of ROWS rows for each of two sources, half of them duplicates naming one of 50 kept
    copies, half malformed rows; returns the bytes written."""
    for source in ("web", "books"):
        for part in range(PARTS):
            rejects = [Reject(source, "deduplicate" if i % 2 else "read", "duplicate_text" if i % 2 else "malformed_json",
                              "why it was set aside, " * 6, id=f"{source}-{part}-{i}", excerpt="the document's start " * 9,
                              duplicate_of=f"kept-{i // 2 % 50}" if i % 2 else None) for i in range(ROWS)]
            write_rejects(layout, source, f"part-{part:05d}", rejects)
    return sum(len(data) for data in layout.read_many(layout.glob(layout.reject_files)))


def test_reject_counts_equal_the_rows_and_hold_none_of_them(tmp_path):
    layout = OutputLayout(tmp_path)
    written = write_many_rejects(layout)

    tracemalloc.start()
    counts = RejectCounts.read(layout)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    rows = read_rejects(layout)
    assert counts.total() == len(rows) == 2 * PARTS * ROWS
    assert counts.total("books") == PARTS * ROWS
    half = PARTS * ROWS // 2
    assert counts.by_stage("web") == {"deduplicate": {"duplicate_text": half}, "read": {"malformed_json": half}}
    assert counts.by_stage() == {"deduplicate": {"duplicate_text": 2 * half}, "read": {"malformed_json": 2 * half}}
    assert counts.copies["deduplicate"] == Counter(row["duplicate_of"] for row in rows if row.get("duplicate_of"))
    assert len(counts.copies["deduplicate"]) == 50 and "read" not in counts.copies
    assert peak < written / 10, f"counting {written:,} bytes of rejects took {peak:,} bytes at the peak"
