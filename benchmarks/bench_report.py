"""Time `tpt report` and a `tpt stats` group-by over a synthetic 10-million-row manifest.

The manifest has realistic shapes: log-normal document lengths truncated at 2,048
tokens, 14 domains (some unlabelled), reasoning intensity correlated with the
domain, thinking length growing with reasoning (about 1.5x from none to advanced)
and capped at 8,192 tokens (finish_reason "length"), 3% flagged thinking.
Goal (issue 6): the report over 10M rows in <= 10 s on 2 cores.

    python -m benchmarks.bench_report [--rows 10000000] [--threads 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from tests.synthetic_run import synthetic_manifest


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (the goal is stated for 2 cores)")
    parser.add_argument("--keep", help="write the synthetic run here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-report-"))
    run = folder / "run"
    run.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pq.write_table(synthetic_manifest(args.rows), run / "manifest.parquet")
    (run / "summary.json").write_text(json.dumps({"schema_version": 1}))
    size = (run / "manifest.parquet").stat().st_size / 2**20
    print(f"built a {args.rows:,}-row manifest ({size:,.0f} MiB) in {time.perf_counter() - started:.1f} s")

    tpt = [sys.executable, "-m", "tpt.cli"]
    load_before = os.getloadavg()[0]
    report = timed([*tpt, "report", str(run), "--output", str(folder / "report"), "--threads", str(args.threads)])
    group_by = timed([*tpt, "stats", str(run), "--threads", str(args.threads), "--sql",
                      "SELECT domain, reasoning, count(*), avg(thinking_tokens), quantile_cont(thinking_tokens, 0.9) "
                      "FROM samples GROUP BY ALL"])
    load_after = os.getloadavg()[0]
    print(f"cores: {os.cpu_count()}, DuckDB threads: {args.threads}, load average (1 min) before/after: {load_before:.1f}/{load_after:.1f}")
    print(f"tpt report:           {report:6.2f} s  {args.rows / report:>13,.0f} rows/s  (goal 10 s: {report / 10:.2f}x of the budget)")
    print(f"tpt stats (group-by): {group_by:6.2f} s  {args.rows / group_by:>13,.0f} rows/s  (report / group-by: {report / group_by:.1f}x)")
    if not args.keep:
        shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
