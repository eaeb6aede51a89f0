"""Report on one or more run outputs: thinking length by domain, audience and reasoning intensity
(the paper's Figure 4), token shares and implicit up-sampling, as summary.json, CSV tables,
PNG plots and one self-contained report.html.

  tpt report out/demo                      # writes out/demo/report/report.html
  tpt report out/run-a out/run-b --output report/
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="OUT",
                        help="run output folders or URLs, e.g. gs://... (each with manifest.parquet and summary.json)")
    parser.add_argument("--output", help="report folder (default: OUT/report of the first run); replaced whole when done")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    parser.add_argument("--min-confidence", type=float, metavar="P",
                        help="count, per class, the samples whose label score on some axis is below P (0-1)")
    parser.add_argument("--leave-out-low-confidence", action="store_true",
                        help="leave the samples below --min-confidence out of the report")


def main(args: argparse.Namespace) -> int:
    from tpt.analysis.report import REPORT_PAGE, write_report
    from tpt.analysis.runs import load_runs

    runs = load_runs(args.runs)
    output = Path(args.output) if args.output else runs[0].root / "report"
    result = write_report(runs, output, args.threads, min_confidence=args.min_confidence, leave_out=args.leave_out_low_confidence)
    totals = result["totals"]
    print(f"tpt report: {totals['samples']:,} samples from {len(runs)} run{'s' if len(runs) != 1 else ''} -> {output / REPORT_PAGE}")
    ratio = result["reasoning_top_over_none"]
    if ratio:
        print(f"  thinking length, reasoning {ratio['top']} over {ratio['none']}: {ratio['ratio']:.2f}x (paper: ~1.5x)")
    confidence = result["confidence"]
    if confidence:
        action = "left out" if confidence["left_out"] else "marked per class"
        print(f"  {confidence['below']:,} of {confidence['samples']:,} samples have a label score below "
              f"{confidence['min_confidence']}: {action}")
    return 0
