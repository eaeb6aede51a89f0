"""`tpt publish` against a bare pyarrow write of the same rows: samples/s, and their ratio (goal: >= 0.8).

    python -m benchmarks.bench_publish [--samples 40000] [--doc-chars 4000] [--thinking-chars 6000] [--rounds 3]

tpt's side is the whole of `tpt publish` in this process: it reads the run's MDS shards, splits each [d; t] into
document and thinking, writes the Parquet files and the dataset card. The bare side is `pq.write_table` of the
same rows, already in memory (read from the shards, untimed), into one file with the same writer options
(tpt.analysis.publish.WRITE_OPTIONS): the goal's ratio. A third side is the bare way end to end:
mosaicml-streaming's StreamingDataset reads the rows from the shards, pyarrow builds a table of them and
writes it with the same options. The sides take turns for a few rounds, each keeping its fastest, so other
work on a shared machine barely moves the figures; they are timed by the wall clock (tpt decodes the next
shards on the other core while it writes) and by this process's CPU time (what the work costs, whatever
else the machine runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.bench_cpu_stages import fastest
from tests.synthetic_run import write_run
from tpt.analysis.publish import ROW_GROUP_BYTES, WRITE_OPTIONS, publish, publishable, rows_within
from tpt.analysis.runs import load_run
from tpt.analysis.samples import separator, source_shards
from tpt.io.mds import read_shards


def run_tpt(run, out: Path) -> int:
    return sum(w["samples"] for w in publish(run, str(out)).values())


def run_bare(table: pa.Table, out: Path) -> int:
    out.mkdir(parents=True)
    pq.write_table(table, out / "data.parquet", row_group_size=rows_within(table, ROW_GROUP_BYTES), **WRITE_OPTIONS)
    return table.num_rows


def run_bare_from_shards(run, out: Path) -> int:
    """The bare way end to end: streaming's StreamingDataset reads each source's rows, pyarrow builds and writes them."""
    from streaming import StreamingDataset

    out.mkdir(parents=True)
    rows = 0
    for source in source_shards(run):
        samples = [dict(sample) for sample in StreamingDataset(local=f"{run.location}/mds/{source}", shuffle=False, batch_size=1)]
        table = pa.Table.from_pylist(samples)
        pq.write_table(table, out / f"{source}.parquet", row_group_size=rows_within(table, ROW_GROUP_BYTES),
                       **WRITE_OPTIONS)
        rows += table.num_rows
    return rows


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
        import streaming  # noqa: F401  (its import, torch's, is not the end-to-end baseline's cost)

        sides = {"tpt": (run_tpt, run, table.num_rows), "bare": (run_bare, table, table.num_rows),
                 "shards": (run_bare_from_shards, run, table.num_rows)}
        load = os.getloadavg()[0]
        seconds = fastest(sides, args.rounds, folder / "wall")
        cpu = fastest(sides, args.rounds, folder / "cpu", clock=time.process_time)  # every thread of this process
        print(f"{table.num_rows:,} samples, {size:,.0f} MiB in Arrow; cores: {os.cpu_count()}, "
              f"load average before/after: {load:.1f}/{os.getloadavg()[0]:.1f}")
        for name, label in (("tpt", "tpt publish (shards -> Parquet + card)"), ("bare", "bare pq.write_table (rows in memory)"),
                            ("shards", "bare StreamingDataset rows -> write")):
            print(f"{label:<39} {seconds[name]:6.2f} s  {table.num_rows / seconds[name]:>9,.0f} samples/s  "
                  f"{size / seconds[name]:6.1f} MiB/s   CPU {cpu[name]:6.2f} s")
        print(f"ratio tpt / bare (samples/s, wall): {seconds['bare'] / seconds['tpt']:.2f} (goal >= 0.8); "
              f"by CPU time: {cpu['bare'] / cpu['tpt']:.2f}")
        print(f"ratio tpt / bare end to end from the shards (wall): {seconds['shards'] / seconds['tpt']:.2f}")
    finally:
        shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
