"""Where the run writing OUT stands: running (with its progress line), finished, failed or dead.

    tpt progress /shared/runs/run1

`tpt run` logs the progress line itself; this command is for runs no driver
follows (datatrove's Slurm jobs) and for any run after the fact. A Slurm run
shows each job's tasks as Slurm reports them; a failed one names each failed
task and its logs. Exit status: 0 running or finished, 1 failed or dead.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUT", help="the run's output folder or URL")


def main(args: argparse.Namespace) -> int:
    from tpt.io.output import OutputLayout
    from tpt.run.status import DEAD, FAILED, run_status

    status = run_status(OutputLayout(args.output))
    if status is None:
        raise FileNotFoundError(f"{args.output}: no tpt run has written there")
    print(status.render())
    return 1 if status.state in (FAILED, DEAD) else 0
