"""Label confidence in `tpt report`: samples whose classifier score on some axis is below a threshold are marked or left out.

A score is the probability the classify stage gave its label (the manifest's
AXIS_score). Marking sets the DuckDB variable `min_confidence`, from which
every class row counts its samples below it (stats.py); leaving out also
narrows the view `samples` to the samples at or above it on every axis. A
sample without a score (not classified) is never below.
"""

from __future__ import annotations

from typing import Any

from tpt.analysis.runs import AnalysisError
from tpt.classify.taxonomy import AXES


def apply_min_confidence(con, min_confidence: float | None, leave_out: bool) -> dict[str, Any] | None:
    """Mark (and with `leave_out`, drop) the samples below `min_confidence`; what was done, for the report."""
    if min_confidence is None:
        if leave_out:
            raise AnalysisError("--leave-out-low-confidence needs --min-confidence")
        return None
    if not 0 < min_confidence <= 1:
        raise AnalysisError(f"--min-confidence: expected a probability in (0, 1], got {min_confidence}")
    con.execute(f"SET VARIABLE min_confidence = {float(min_confidence)}")
    below = "coalesce(" + " OR ".join(f"{axis}_score < getvariable('min_confidence')" for axis in AXES) + ", false)"
    samples, low = con.sql(f"SELECT count(*), count_if({below}) FROM samples").fetchall()[0]
    if leave_out:
        con.execute("ALTER VIEW samples RENAME TO all_samples")
        con.execute(f"CREATE VIEW samples AS SELECT * FROM all_samples WHERE NOT {below}")
    return {"min_confidence": min_confidence, "samples": samples, "below": low, "left_out": leave_out}
