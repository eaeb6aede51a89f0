"""How long `tpt show` takes to print its first sample on a 10-million-sample run (goal: within 2 s), against
the way it was done before it: mosaicml-streaming's StreamingDataset reading the first sample.

    python -m benchmarks.bench_show [--samples 10000000] [--keep DIR] [--rounds 3]

The run is made once by tpt's own writer and finalize (tests/synthetic_run.py: real text, realistic labels
and lengths; ~10 minutes for 10M samples on 2 cores); --keep DIR keeps it and reuses it. Each figure is the
wall time from starting the command to reading its first sample's line, the fastest of a few rounds, the
commands taking turns: a plain `tpt show`, one with --where over the manifest, and one with --random.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.synthetic_run import write_run

GOAL_SECONDS = 2.0
WHERE = "domain = 'mathematics' AND thinking_tokens > 1000"
BARE = """
import sys
from streaming import StreamingDataset
print(StreamingDataset(local=sys.argv[1], shuffle=False, batch_size=1)[0]["text"][:80].replace("\\n", " "), flush=True)
"""


def first_line(command: list[str]) -> float:
    """Seconds from starting `command` to reading the first line it prints; then it is stopped."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = process.stdout.readline()
    took = time.perf_counter() - started
    process.kill()
    process.wait()
    assert line.strip(), f"{command} printed nothing"
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--keep", help="make the run here, or reuse the one already there")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-show-"))
    folder.mkdir(parents=True, exist_ok=True)
    run = folder / "run"
    try:
        if not (run / "summary.json").exists():
            started = time.perf_counter()
            write_run(run, args.samples)
            print(f"made a {args.samples:,}-sample run in {time.perf_counter() - started:,.0f} s")
        size = sum(p.stat().st_size for p in run.rglob("*") if p.is_file()) / 2**30
        source = sorted(p.name for p in (run / "mds").iterdir())[0]
        tpt = [sys.executable, "-m", "tpt.cli", "show", str(run), "--format", "jsonl", "-n", "1"]
        commands = {
            "tpt show OUT": tpt,
            "tpt show OUT --where ...": [*tpt, "--where", WHERE],
            "tpt show OUT --random": [*tpt, "--random", "--seed", "7"],
            "bare: StreamingDataset[0]": [sys.executable, "-c", BARE, str(run / "mds" / source)],
        }
        seconds = {name: float("inf") for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                seconds[name] = min(seconds[name], first_line(command))
        bare = seconds.pop("bare: StreamingDataset[0]")
        print(f"run: {args.samples:,} samples, {size:.1f} GiB on disk; cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
        print(f"bare: StreamingDataset[0] of the first source   {bare:6.2f} s to the first sample")
        for name, took in seconds.items():
            print(f"{name:<48} {took:6.2f} s to the first sample   bare / tpt: {bare / took:5.1f}x   "
                  f"goal {GOAL_SECONDS:.0f} s: {'met' if took <= GOAL_SECONDS else 'MISSED'}")
    finally:
        if not args.keep:
            shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
