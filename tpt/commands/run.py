"""Run the pipeline of a config: read, truncate, ..., write MDS shards.

Pass engine options after `--`, e.g. Beam's Dataflow options:
  tpt run configs/my.yaml --runner DataflowRunner --output gs://bucket/run -- --project P --region R --temp_location gs://b/tmp
On datatrove (local worker processes, or Slurm job arrays from the config's `datatrove.slurm`):
  tpt run configs/demo.yaml --engine datatrove --tasks 8 --workers 2
  tpt run configs/demo.yaml --engine datatrove --executor slurm --dry-run
"""

from __future__ import annotations

import argparse
import os
from typing import Any


LOCAL_WORKERS = min(os.cpu_count() or 1, 8)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config YAML")
    parser.add_argument("--output", help="output folder (overrides output.dir)")
    parser.add_argument("--engine", choices=["beam", "datatrove"], default="beam", help="pipeline engine (default: beam)")
    parser.add_argument("--runner", default="DirectRunner", help="Beam runner: DirectRunner (local worker processes) or DataflowRunner")
    parser.add_argument("--workers", type=int,
                        help="local worker processes (default: CPU count, at most 8); on Slurm, tasks running at once (default: no cap)")
    parser.add_argument("--executor", choices=["local", "slurm"], default="local", help="datatrove executor (default: local)")
    parser.add_argument("--tasks", type=int,
                        help="datatrove tasks over document ids (default: one per worker locally, output.parts on Slurm)")
    parser.add_argument("--dry-run", action="store_true", help="datatrove on Slurm: print the sbatch scripts, submit nothing")


def main(args: argparse.Namespace) -> int:
    from tpt.config import load_config

    config = load_config(args.config).with_output_dir(args.output)
    if not config.output.dir:
        raise ValueError("no output folder: pass --output or set output.dir in the config")
    if args.engine == "datatrove":
        return run_datatrove(config, args)
    if args.executor != "local" or args.tasks or args.dry_run:
        raise ValueError("--executor, --tasks and --dry-run are options of --engine datatrove")
    from pipelines.beam.pipeline import run

    summary = run(config, runner=args.runner, workers=args.workers or LOCAL_WORKERS, beam_args=args.engine_args)
    print(render_summary(summary))
    return 0


def run_datatrove(config, args: argparse.Namespace) -> int:
    """Run locally, submit the Slurm jobs, or print their sbatch scripts."""
    from pipelines.datatrove import pipeline

    workers = args.workers or (LOCAL_WORKERS if args.executor == "local" else -1)
    if args.dry_run:
        print(pipeline.dry_run(config, args.executor, args.tasks, workers))
        return 0
    summary = pipeline.run(config, args.executor, args.tasks, workers)
    if summary is None:
        print(f"tpt run: Slurm jobs submitted; follow them with `tpt progress {config.output.dir}`; "
              f"the summary will be at {config.output.dir}/summary.json")
    else:
        print(render_summary(summary))
    return 0


def render_summary(summary: dict[str, Any]) -> str:
    """The one-screen end-of-run summary."""
    totals = summary["totals"]
    lines = [
        f"tpt run finished in {summary['wall_seconds']:.1f} s ({summary['docs_per_second']} docs/s) on {summary['engine']['name']}",
        f"  read {totals['read']:,}  written {totals['written']:,}  rejected {totals['rejected']:,}  truncated {totals['truncated']:,}",
        f"  tokens: documents {totals['doc_tokens']:,} -> kept {totals['kept_tokens']:,}"
        + (f", thinking {totals['thinking_tokens']:,}, samples {totals['sample_tokens']:,}" if totals["thinking_tokens"] else ""),
        "",
        f"  {'source':<16}{'weight':>8}{'read':>9}{'written':>9}{'rejected':>10}",
    ]
    for name, source in summary["sources"].items():
        lines.append(f"  {name:<16}{source['weight']:>8g}{source['read']:>9,}{source['written']:>9,}{source['rejected']:>10,}")
    for stage, counts in summary["stages"].items():
        if counts.get("rejected"):
            reasons = ", ".join(f"{reason} {n}" for reason, n in counts["rejected"].items())
            lines.append(f"  rejected at {stage}: {reasons}")
    out = summary["output"]
    lines += ["", f"  shards:   {out}/mds/", f"  streams:  {out}/streams.yaml", f"  manifest: {out}/manifest.parquet",
              f"  rejects:  {out}/rejects/", f"  summary:  {out}/summary.json"]
    return "\n".join(lines)
