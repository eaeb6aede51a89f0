"""Show the run-wide progress line of a run writing to OUT, from its workers' counts.

`tpt run` logs this line itself; this command is for runs no driver follows,
such as datatrove's Slurm jobs: tpt progress /shared/runs/run1
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUT", help="the run's output folder or URL")


def main(args: argparse.Namespace) -> int:
    from tpt.io.output import OutputLayout
    from tpt.progress import BEACONS, PLAN, RunProgress

    layout = OutputLayout(args.output)
    if not layout.exists(f"{BEACONS}/{PLAN}"):
        raise FileNotFoundError(f"{args.output}: no run in progress there (a finished run has {layout.summary})")
    progress = RunProgress.of_run(layout.url_of(BEACONS))
    print(progress.line(progress.counts()))
    return 0
