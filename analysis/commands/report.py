"""Report on a run output, or compare several side by side: thinking length by domain, audience and
reasoning intensity (the paper's Figure 4), token shares and implicit up-sampling, duplicates per source and
a few samples per class, as summary.json, CSV tables, PNG plots and one self-contained report.html.

  tpt report out/demo                      # writes out/demo/report/report.html
  tpt report out/run-a out/run-b --label 1.5B --label 7B --output report/

With several runs each is its own series in every plot and its own column in every table, with the
difference from the first run, and the samples two runs share (same id) are compared run against run.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="OUT",
                        help="run output folders or URLs, e.g. gs://... (each with manifest.parquet and summary.json)")
    parser.add_argument("--label", action="append", metavar="NAME",
                        help="the name of a run in the report, once per run in order (default: the folder names)")
    parser.add_argument("--output", help="report folder (default: OUT/report of the first run); replaced whole when done")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    parser.add_argument("--min-confidence", type=float, metavar="P",
                        help="count, per class, the samples whose label score on some axis is below P (0-1)")
    parser.add_argument("--leave-out-low-confidence", action="store_true",
                        help="leave the samples below --min-confidence out of the report")


def main(args: argparse.Namespace) -> int:
    from tpt.analysis.report import REPORT_PAGE, write_report
    from tpt.analysis.runs import AnalysisError, load_runs

    runs = load_runs(args.runs, args.label)
    if args.output is None and runs[0].data_files:
        raise AnalysisError(f"{args.runs[0]} is a published dataset; give the report a folder of its own with --output")
    output = Path(args.output) if args.output else runs[0].root / "report"
    result = write_report(runs, output, args.threads, min_confidence=args.min_confidence, leave_out=args.leave_out_low_confidence)
    samples = sum(run["samples"] for run in result["runs"])
    print(f"tpt report: {samples:,} samples from {len(runs)} run{'s' if len(runs) != 1 else ''} -> {output / REPORT_PAGE}")
    for name, figures in (result["series"].items() if "series" in result else [(runs[0].name, result)]):
        ratio = figures["reasoning_top_over_none"]
        if ratio:
            owner = f"{name}: " if len(runs) > 1 else ""
            print(f"  {owner}thinking length, reasoning {ratio['top']} over {ratio['none']}: {ratio['ratio']:.2f}x (paper: ~1.5x)")
    for pair in result.get("pairs", []):
        mean = "" if pair["difference_mean"] is None else f", thinking {pair['difference_mean']:+,.1f} tokens on average"
        print(f"  {pair['b']} vs {pair['a']}: {pair['shared']:,} shared samples{mean}")
    confidence = result["confidence"]
    for name, marked in ((confidence or {}).items() if "series" in result else [(None, confidence)]):
        if marked:
            action = "left out" if marked["left_out"] else "marked per class"
            print(f"  {name + ': ' if name else ''}{marked['below']:,} of {marked['samples']:,} samples have a label score below "
                  f"{marked['min_confidence']}: {action}")
    return 0
