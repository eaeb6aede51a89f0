"""Run the pipeline of a config: read, truncate, ..., write MDS shards.

Any key of the config can be set after it, as `tpt train` takes them:
  tpt run configs/demo.yaml truncate.max_doc_tokens=512 dedup.duplicates=reuse

Pass engine options after `--`, e.g. Beam's Dataflow options:
  tpt run configs/my.yaml --runner DataflowRunner --output gs://bucket/run -- --project P --region R --temp_location gs://b/tmp
On datatrove (local worker processes, Slurm job arrays from the config's `datatrove.slurm`, or Ray tasks):
  tpt run configs/demo.yaml --engine datatrove --tasks 8 --workers 2
  tpt run configs/demo.yaml --engine datatrove --executor slurm --dry-run
  tpt run configs/demo.yaml --engine datatrove --executor ray --address HEAD:6379
"""

from __future__ import annotations

import argparse
from typing import Any

from tpt.run.registry import ENGINES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config YAML")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="set a key of the config (dotted for nested keys; values parse as YAML)")
    parser.add_argument("--output", help="output folder (overrides output.dir)")
    parser.add_argument("--engine", choices=list(ENGINES), default="beam", help="pipeline engine (default: beam)")
    parser.add_argument("--workers", type=int,
                        help="local worker processes (0 or none: the CPU count, at most 8); on Slurm, tasks running at once "
                             "(0 or none: no cap)")
    beam = parser.add_argument_group("beam")
    beam.add_argument("--runner", help="Beam runner: DirectRunner (local worker processes, the default) or DataflowRunner")
    datatrove = parser.add_argument_group("datatrove")
    datatrove.add_argument("--executor", choices=["local", "slurm", "ray"], help="datatrove executor (default: local)")
    datatrove.add_argument("--tasks", type=int,
                           help="datatrove tasks over document ids (0 or none: one per worker locally, output.parts on Slurm)")
    datatrove.add_argument("--dry-run", action="store_true", help="datatrove on Slurm: print the sbatch scripts, submit nothing")
    datatrove.add_argument("--address",
                           help="datatrove on Ray: the cluster's address (default: RAY_ADDRESS, else a local cluster for the run)")


def main(args: argparse.Namespace) -> int:
    from tpt.config import load_config
    from tpt.run import execute

    config = load_config(args.config, args.overrides).with_output_dir(args.output)
    summary = execute(config, args.engine, check=not args.dry_run,  # a dry run writes nothing and needs no server yet
                      workers=args.workers, runner=args.runner, beam_args=args.engine_args, executor=args.executor,
                      tasks=args.tasks, dry_run=args.dry_run, address=args.address)
    if summary is not None:  # None: a dry run, or jobs submitted to a scheduler (the engine said which)
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
    lines += generation_lines(summary["stages"].get("think", {}))
    out = summary["output"]
    lines += ["", f"  shards:   {out}/mds/", f"  streams:  {out}/streams.yaml", f"  manifest: {out}/manifest.parquet"]
    if totals["rejected"]:  # the folder exists only when something was set aside
        lines.append(f"  rejects:  {out}/rejects/")
    lines.append(f"  summary:  {out}/summary.json")
    return "\n".join(lines)


REPAIRED = (("answers_over_budget", "over budget (cut at twice it)"), ("characters_replaced", "invalid characters replaced"),
            ("answers_with_invalid_usage", "with token counts that were not counts"))


def generation_lines(think: dict[str, Any]) -> list[str]:
    """The thinking generation of the run (most of its cost), when it had any: requests, tokens, rate, repairs."""
    if "requests_generated" not in think:
        return []
    rate = think["output_tokens_per_second"]
    lines = ["", f"  generation: {think['requests_generated']:,} generated, {think['requests_resumed']:,} resumed, "
                 f"{think['requests_failed']:,} failed, {think['requests_retried']:,} retries; "
                 f"{think['output_tokens']:,} output tokens in {think['generation_seconds']:.1f} s"
                 + (f", {rate:,.0f} tokens/s" if rate else "")]
    repaired = [f"{think[key]:,} {what}" for key, what in REPAIRED if think.get(key)]
    if repaired:
        lines.append(f"  server answers put right: {', '.join(repaired)}")
    return lines
