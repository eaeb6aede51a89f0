"""Print samples of a run: the document, the thinking and the labels of each, clearly delimited.

  tpt show out/demo                                     # the first 10 samples, in shard order
  tpt show out/demo --where "domain = 'mathematics' AND thinking_tokens > 1000" -n 3
  tpt show gs://bucket/run --random --seed 7 -n 5 --format jsonl

--where is SQL over the run's manifest (any column of `tpt stats`' view `samples`). It streams: the first sample
prints as soon as its shard is read, however large the run.
"""

from __future__ import annotations

import argparse

FORMATS = ("text", "jsonl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="OUT", help="a run output folder or URL (gs://...)")
    parser.add_argument("--where", help="SQL condition on the manifest's columns, e.g. \"reasoning = 'advanced'\"")
    parser.add_argument("-n", type=int, default=10, metavar="N", help="samples to print (default: 10; 0: all)")
    parser.add_argument("--random", action="store_true", help="a random sample spread over the run instead of the first ones")
    parser.add_argument("--seed", type=int, default=0, help="the seed of --random (default: 0)")
    parser.add_argument("--format", choices=FORMATS, default="text", help="text (default) or jsonl, one JSON object per sample")


def main(args: argparse.Namespace) -> int:
    import sys

    from tpt.analysis.runs import AnalysisError, load_run
    from tpt.analysis.show import format_sample

    if args.n < 0:
        raise AnalysisError(f"-n: expected 0 (all) or a positive count, got {args.n}")
    if args.seed != 0 and not args.random:
        raise AnalysisError("--seed needs --random")
    from tpt.analysis.samples import read_samples

    run = load_run(args.run)
    shown = 0
    try:
        for number, sample in enumerate(read_samples(run, args.where, args.n or None, args.seed if args.random else None), 1):
            sys.stdout.write(format_sample(sample, number, args.format))
            sys.stdout.flush()
            shown = number
    except BrokenPipeError:  # `tpt show OUT | head`: the reader has what it wanted
        sys.stderr.close()
        return 0
    if not shown:
        print("tpt show: no sample" + (" matches --where" if args.where else "s in this run's shards"), file=sys.stderr)
    return 0
