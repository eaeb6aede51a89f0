"""`tpt report`'s output folder: summary.json, one CSV per table, the PNG figures and report.html.

Written into a temporary sibling folder and moved into place only when complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from tpt.analysis import html, plots
from tpt.analysis.confidence import apply_min_confidence
from tpt.analysis.runs import Run, connect
from tpt.analysis.stats import analyse
from tpt.classify.taxonomy import AXES
from tpt.io.owned import replacing_folder

REPORT_PAGE = "report.html"


def build(runs: list[Run], threads: int | None = None, min_confidence: float | None = None, leave_out: bool = False) -> dict[str, Any]:
    """The statistics of `runs`, with the runs they came from; samples below `min_confidence` marked, or left out."""
    con = connect(runs, threads)
    confidence = apply_min_confidence(con, min_confidence, leave_out)
    counts = dict(con.sql("SELECT run, count(*) FROM samples GROUP BY run").fetchall())
    result = {"runs": [{"name": r.name, "path": str(r.root), "samples": counts.get(r.name, 0),
                        "rejected": r.summary.get("totals", {}).get("rejected")} for r in runs]}
    result.update(analyse(con))
    result["confidence"] = confidence
    result["definitions"] = dict(html.DEFINITIONS)
    return result


def write_report(runs: list[Run], output: Path, threads: int | None = None, **confidence: Any) -> dict[str, Any]:
    """Compute and write the whole report folder; returns the statistics (`confidence`: see `build`)."""
    result = build(runs, threads, **confidence)
    figures = plots.render_all(result)
    with replacing_folder(output, "tpt report", written_before_markers=lambda folder: folder.exists(REPORT_PAGE)) as staging:
        (staging / "summary.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        for name, rows in {**{axis: result["axes"][axis] for axis in AXES}, "sources": result["sources"]}.items():
            write_csv(rows, staging / f"{name}.csv")
        for name, png in figures.items():
            (staging / name).write_bytes(png)
        (staging / REPORT_PAGE).write_text(html.render(result, figures), encoding="utf-8")
    return result


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    table = pa.Table.from_pylist(rows) if rows else pa.table({"class": pa.array([], pa.string())})
    pacsv.write_csv(table, path)
