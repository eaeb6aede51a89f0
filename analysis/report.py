"""`tpt report`'s output folder: summary.json, one CSV per table, the PNG figures and report.html, for one run
or several side by side (tpt.analysis.compare).

Written into a temporary sibling folder and moved into place only when complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from tpt.analysis import html, plots
from tpt.analysis.compare import flat, pairs, side_by_side
from tpt.analysis.confidence import apply_min_confidence
from tpt.analysis.duplicates import duplicates
from tpt.analysis.excerpts import excerpts
from tpt.analysis.runs import Run, connect
from tpt.analysis.stats import analyse, thinking_histogram
from tpt.classify.taxonomy import AXES
from tpt.io.owned import replacing_folder

REPORT_PAGE = "report.html"


def build(runs: list[Run], threads: int | None = None, min_confidence: float | None = None, leave_out: bool = False) -> dict[str, Any]:
    """The statistics of `runs`, with the runs they came from; samples below `min_confidence` marked, or left out.

    One run: its figures at the top level. Several: each run's own figures under `series` (nothing pooled), the
    per-run thinking histogram on common bins, and the first run against each other on the ids they share."""
    per_run, confidence = {}, {}
    for run in runs:
        con = connect([run], threads)
        confidence[run.name] = apply_min_confidence(con, min_confidence, leave_out)
        per_run[run.name] = {**analyse(con), "duplicates": duplicates(run), "samples": {} if run.data_files else excerpts(run)}
    result: dict[str, Any] = {"runs": [{"name": r.name, "path": r.location, "samples": per_run[r.name]["totals"]["samples"],
                                        "rejected": r.summary.get("totals", {}).get("rejected")} for r in runs]}
    if len(runs) == 1:
        result.update(per_run[runs[0].name])
        result["confidence"] = confidence[runs[0].name]
    else:
        con = connect(runs, threads)
        apply_min_confidence(con, min_confidence, leave_out)
        result["series"] = per_run
        result["run_histogram"] = thinking_histogram(con, by="run").to_pylist()
        result["pairs"] = pairs(con, runs)
        result["confidence"] = confidence if min_confidence is not None else None
    result["definitions"] = dict(html.DEFINITIONS)
    return result


def write_report(runs: list[Run], output: Path, threads: int | None = None, **confidence: Any) -> dict[str, Any]:
    """Compute and write the whole report folder; returns the statistics (`confidence`: see `build`)."""
    result = build(runs, threads, **confidence)
    figures = plots.render_all(result)
    with replacing_folder(output, "tpt report", written_before_markers=lambda folder: folder.exists(REPORT_PAGE)) as staging:
        (staging / "summary.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        for name, rows in tables(result).items():
            write_csv(rows, staging / f"{name}.csv")
        for name, png in figures.items():
            (staging / name).write_bytes(png)
        (staging / REPORT_PAGE).write_text(html.render(result, figures), encoding="utf-8")
    return result


def tables(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The CSV tables: one row per class of each axis, per source, and the duplicates per source; for several
    runs, every figure per run and each difference from the first run (tpt.analysis.compare.flat)."""
    if "series" not in result:
        dupes = [{key: value for key, value in row.items() if key != "reasons"} | row["reasons"] for row in result["duplicates"]]
        return {**{axis: result["axes"][axis] for axis in AXES}, "sources": result["sources"], "duplicates": dupes}
    series = result["series"]
    keys = [key for key in next(iter(series.values()))["totals"] if key != "class"]
    compared = {axis: flat(side_by_side({name: s["axes"][axis] for name, s in series.items()}, keys)) for axis in AXES}
    compared["sources"] = flat(side_by_side({name: s["sources"] for name, s in series.items()}, keys))
    compared["duplicates"] = flat(side_by_side({name: s["duplicates"] for name, s in series.items()},
                                               ["read", "duplicates", "duplicate_share"]))
    return compared


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    table = pa.Table.from_pylist(rows) if rows else pa.table({"class": pa.array([], pa.string())})
    pacsv.write_csv(table, path)
