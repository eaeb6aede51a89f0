"""Finishing a run that set most of its corpus aside as duplicates: summary.json's seconds and peak memory.

    python -m benchmarks.bench_finalize [--rejects 600000] [--rounds 3]

A run's staging folder as its workers leave it, with `--rejects` rows in OUT/rejects/ (two sources, 64 parts
each): exact duplicates, two copies of each kept document set aside, as on a corpus two-thirds duplicates.
tpt's side is `finalize` with the deduplication stage's report (summary.json: rejects per source, stage and
reason, clusters and the largest), each round in a fresh process on a fresh copy of the folder. The bare
side, in the same run, is the least any count of those rejects does: every line parsed by `json.loads` and
dropped, one file after another, in one process. Each side's fastest round counts, and its peak resident
memory above the process's own at the start.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tpt.config import OutputConfig, PipelineConfig, SourceConfig
from tpt.io.output import OutputLayout, part_name, write_rejects
from tpt.io.publish import staged
from tpt.schema import Reject

SOURCES, PARTS, COPIES = ("web", "books"), 64, 2

TPT = """
import json, resource, sys, time
from tpt.config import PipelineConfig
from tpt.dedup import Deduplication
from tpt.io.finalize import finalize
from tpt.io.output import OutputLayout
config = PipelineConfig.model_validate(json.loads(sys.argv[2]))
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
took = time.perf_counter()
summary = finalize(OutputLayout(sys.argv[1]), config, [Deduplication(config.dedup, {s.name: s.weight for s in config.sources},
                   thinks=False)], 1.0, {"name": "bench"})
took = time.perf_counter() - took
print(json.dumps([took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start, summary["totals"]["rejected"]]))
"""

BARE = """
import glob, json, resource, sys, time
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
took, rows = time.perf_counter(), 0
for name in sorted(glob.glob(sys.argv[1] + "/*/*.jsonl")):
    with open(name, "rb") as lines:
        for line in lines:
            json.loads(line)
            rows += 1
took = time.perf_counter() - took
print(json.dumps([took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start, rows]))
"""


def config_of(out: Path) -> PipelineConfig:
    return PipelineConfig(sources=[SourceConfig(name=name, path=f"{name}.jsonl") for name in SOURCES],
                          output=OutputConfig(dir=str(out)))


def write_workers_output(out: Path, rejects: int) -> None:
    """What the workers of such a run leave in its staging folder: the rejects (the kept documents' shards, a
    third of the corpus, are left out: finalize only counts their manifest rows)."""
    staging, kept = staged(OutputLayout(str(out))), rejects // (COPIES * len(SOURCES))
    excerpt = "The start of a document that was seen before, as a reject's excerpt keeps it: " * 3
    for source in SOURCES:
        for part in range(PARTS):
            rows = [Reject(source, "deduplicate", "duplicate_text", f"the same text as 'doc-{i}' of source 'web', which is "
                           "kept (estimated Jaccard 1.000)", id=f"{source}-{copy}-{i}", excerpt=excerpt[:200],
                           duplicate_of=f"doc-{i}", similarity=1.0)
                    for i in range(part, kept, PARTS) for copy in range(COPIES)]
            write_rejects(staging, source, part_name(part), rows)


def measured(script: str, *argv: str) -> tuple[float, int, int]:
    """(seconds, peak KiB above the start, rejects counted) of one side, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", script, *argv], check=True, capture_output=True, text=True)
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rejects", type=int, default=600_000)
    parser.add_argument("--rounds", type=int, default=3, help="turns each side takes; its fastest counts")
    args = parser.parse_args()
    best: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared"
        write_workers_output(prepared, args.rejects)
        expected = (args.rejects // (COPIES * len(SOURCES))) * COPIES * len(SOURCES)
        for turn in range(args.rounds):
            for side in ("bare", "tpt"):
                folder = Path(tmp) / f"{side}-{turn}"
                shutil.copytree(prepared, folder)
                if side == "bare":
                    seconds, peak, counted = measured(BARE, staged(OutputLayout(str(folder))).path("rejects"))
                else:
                    seconds, peak, counted = measured(TPT, str(folder), config_of(folder).model_dump_json())
                assert counted == expected, f"{side} counted {counted} of {expected} rejects"
                best[side] = min(best.get(side, (seconds, peak)), (seconds, peak))
                shutil.rmtree(folder)
    (bare_s, bare_kib), (tpt_s, tpt_kib) = best["bare"], best["tpt"]
    print(f"rejects: {expected:,} in {len(SOURCES) * PARTS} files ({COPIES} copies set aside per kept document), "
          f"fastest of {args.rounds} rounds, each in a fresh process")
    print(f"  {'bare: json.loads of every line':<38}{bare_s:8.2f} s{bare_kib / 1024:9.0f} MiB peak")
    print(f"  {'tpt: finalize, deduplication report':<38}{tpt_s:8.2f} s{tpt_kib / 1024:9.0f} MiB peak")
    print(f"ratio tpt / bare: {tpt_s / bare_s:.2f} of the time; "
          f"{expected / tpt_s:,.0f} rejects/s against {expected / bare_s:,.0f}")


if __name__ == "__main__":
    main()
