"""`tpt publish` against a bare pyarrow write of the same rows: samples/s, and their ratio (goal: >= 0.8).

    python benchmarks/bench_publish.py [--samples 40000] [--doc-chars 4000] [--thinking-chars 6000] [--rounds 3]

tpt's side is the whole of `tpt publish` in this process: it reads the run's MDS shards, splits each [d; t] into
document and thinking, writes the Parquet files and the dataset card. The bare side is `pq.write_table` of the
same rows, already in memory (read from the shards, untimed), into one file with the same writer options
(tpt.analysis.publish.WRITE_OPTIONS). The two take turns for a few rounds, each keeping its fastest, so other
work on a shared machine barely moves the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_cpu_stages import fastest  # noqa: E402
from benchmarks.synthetic_run import write_run  # noqa: E402
from tpt.analysis.publish import ROW_GROUP_BYTES, WRITE_OPTIONS, publish, publishable  # noqa: E402
from tpt.analysis.runs import load_run  # noqa: E402
from tpt.analysis.samples import separator, source_shards  # noqa: E402
from tpt.io.mds import read_shards  # noqa: E402


def run_tpt(run, out: Path) -> int:
    return sum(w["samples"] for w in publish(run, str(out)).values())


def run_bare(table: pa.Table, out: Path) -> int:
    out.mkdir(parents=True)
    rows = max(1, int(table.num_rows * ROW_GROUP_BYTES / max(table.nbytes, 1)))
    pq.write_table(table, out / "data.parquet", row_group_size=rows, **WRITE_OPTIONS)
    return table.num_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40_000)
    parser.add_argument("--doc-chars", type=int, default=4000, help="document characters per sample (~1k tokens)")
    parser.add_argument("--thinking-chars", type=int, default=6000, help="thinking characters per sample (~1.5k tokens)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    try:
        run = load_run(write_run(folder / "run", args.samples, args.doc_chars, args.thinking_chars))
        cut = separator(run)
        table = pa.concat_tables(publishable(shard, cut) for listed in source_shards(run).values() for shard in read_shards(listed))
        size = table.nbytes / 2**20
        seconds = fastest({"tpt": (run_tpt, run, table.num_rows), "bare": (run_bare, table, table.num_rows)}, args.rounds, folder)
        tpt_rate, bare_rate = table.num_rows / seconds["tpt"], table.num_rows / seconds["bare"]
        print(f"{table.num_rows:,} samples, {size:,.0f} MiB in Arrow; cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
        for name, label in (("tpt", "tpt publish (shards -> Parquet + card)"), ("bare", "bare pq.write_table (rows in memory)")):
            print(f"{label:<39} {seconds[name]:6.2f} s  {table.num_rows / seconds[name]:>9,.0f} samples/s  "
                  f"{size / seconds[name]:6.1f} MiB/s")
        print(f"ratio tpt / bare: {tpt_rate / bare_rate:.2f} (goal >= 0.8)")
    finally:
        shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
