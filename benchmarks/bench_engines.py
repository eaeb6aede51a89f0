"""Documents/s of the CPU stages (read -> one per id -> truncate -> deduplicate -> write, finalize) on Beam and datatrove.

    python -m benchmarks.bench_engines [--documents 2000] [--rounds 3] [--no-slurm]

One corpus of ~2k-token documents joined from the demo's real text, split into
two files: Beam on the DirectRunner (multi_processing, 2 workers), datatrove on
the local executor (2 tasks, 2 workers), datatrove on Ray (2 tasks on a
local Ray cluster of 2 CPUs, started before the clock starts: its start-up is
printed apart) and datatrove on Slurm (2 tasks a job on the two-node cluster of
scripts/slurm-cluster.sh, one CPU a node, started first if it is not up; the
time `tpt run` takes to submit the jobs is printed apart too), each timed end
to end from the call to the summary on disk, with the engines' modules
imported before the clock, as the floor's are. Each engine runs with text
deduplication (the default) and without it: its cost is the ratio of the two.

The floors, measured in the same run: the bare primitives of bench_cpu_stages
(json + batched encode + MDSWriter in a tight loop) on one core, twice that
(the most two ideal cores could do), and on both cores at once (one process
per file: what two cores of this machine do side by side). Each engine also
runs a corpus of one document per file: its start-up and teardown.

Every figure is the fastest of a few rounds, all runs taking turns within a
round (bench_cpu_stages.fastest).
"""

from __future__ import annotations

import os

os.environ["RAYON_NUM_THREADS"] = "1"  # one core per worker process: before tokenizers starts its pool

import argparse
import contextlib
import io
import logging
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_cpu_stages import BATCH, MAX_TOKENS, fastest, run_bare
from tests.conftest import running_slurm_cluster
from tests.corpora import write_corpus
from tpt.config import PipelineConfig
from tpt.run.registry import ENGINES

WORKERS = 2
ONE_CORE, BOTH_CORES = "bare primitives, 1 core", "bare primitives, 2 cores at once"
BEAM, DATATROVE, RAY = "Beam DirectRunner, 2 workers", "datatrove local, 2 tasks", "datatrove Ray, 2 tasks"
SLURM = "datatrove Slurm, 2 nodes"
ONE_EACH = ", one document per file"
NO_DEDUP = ", no deduplication"
SUBMISSIONS: list[float] = []  # seconds `tpt run` took to submit each Slurm run


def split(corpus: Path, folder: Path, files: int) -> Path:
    """The corpus as `files` files of whole lines in `folder`, so either engine can read them in parallel."""
    lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    folder.mkdir()
    for number in range(files):
        (folder / f"part{number}.jsonl").write_text("".join(lines[number::files]), encoding="utf-8")
    return folder


def run_bare_forked(files: list[Path], out: Path) -> int:
    """The bare primitives on every file at once, one forked process per file: imports already paid, and this
    process never runs the tokenizer itself, so its thread pool is never forked."""
    with multiprocessing.get_context("fork").Pool(len(files)) as pool:
        return sum(pool.starmap(run_bare, [(file, out / file.stem) for file in files]))


def engine_config(parts: Path, out: Path, dedup: bool) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "sources": [{"name": "bench", "path": str(parts / "part*.jsonl")}],
        "truncate": {"max_doc_tokens": MAX_TOKENS, "batch_size": BATCH},
        "output": {"dir": str(out), "parts": WORKERS},
        "dedup": {"exact": dedup, "near": dedup},
    })


def run_beam(config: PipelineConfig) -> int:
    from tpt.run import execute

    return execute(config, workers=WORKERS)["totals"]["written"]


def run_datatrove(config: PipelineConfig) -> int:
    from tpt.run import execute

    return execute(config, "datatrove", tasks=WORKERS, workers=WORKERS)["totals"]["written"]


def run_ray(config: PipelineConfig) -> int:
    from tpt.run import execute

    return execute(config, "datatrove", executor="ray", tasks=WORKERS)["totals"]["written"]


def run_slurm(config: PipelineConfig) -> int:
    """Submit the run to Slurm (timed apart: SUBMISSIONS), then wait for its summary on disk."""
    from tpt.config import DatatroveConfig, SlurmConfig
    from tpt.io.output import OutputLayout
    from tpt.run import execute
    from tpt.slurm import still_queued

    config = config.model_copy(update={"datatrove": DatatroveConfig(slurm=SlurmConfig(partition="debug"))})
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the table of submitted jobs
        assert execute(config, "datatrove", executor="slurm", tasks=WORKERS) is None
    SUBMISSIONS.append(time.perf_counter() - started)
    layout, polls = OutputLayout(config.output.dir), 0
    while not layout.exists(layout.summary):
        polls += 1
        if polls % 100 == 0:  # every few seconds: a run that failed never writes its summary
            jobs = layout.read_json(".lock")["slurm_jobs"]
            assert still_queued([job_id for job in jobs for job_id in job["ids"]]), f"the Slurm run in {layout.url} failed"
        time.sleep(0.02)
    return layout.read_json(layout.summary)["totals"]["written"]


def start_ray() -> float:
    """Seconds to start a local Ray cluster of WORKERS CPUs, which the Ray run then uses (`tpt run` alone would start
    one of all CPUs for the run)."""
    import ray

    started = time.perf_counter()
    ray.init(address="local", num_cpus=WORKERS, log_to_driver=False)
    return time.perf_counter() - started


def on(engine: Callable[[PipelineConfig], int], dedup: bool = True) -> Callable[[Path, Path], int]:
    """An engine as a run of the files in one folder into another."""
    return lambda parts, out: engine(engine_config(parts, out, dedup))


def engine_runs(engines: dict[str, Callable[[PipelineConfig], int]], parts: Path, one_each: Path, documents: int) -> dict:
    runs = {}
    for name, engine in engines.items():
        runs[f"{name}{ONE_EACH}"] = (on(engine), one_each, WORKERS)
        runs[name] = (on(engine), parts, documents)
        runs[f"{name}{NO_DEDUP}"] = (on(engine, dedup=False), parts, documents)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; the fastest counts")
    parser.add_argument("--no-slurm", action="store_true", help="leave the Slurm executor out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from loguru import logger  # datatrove's task logs: keep the benchmark's output to its numbers

    logger.remove()
    import streaming  # noqa: F401  (the floor's MDSWriter)

    for name in ("beam", "datatrove"):
        ENGINES[name].load()
    n = args.documents
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = write_corpus(tmp / "corpus.jsonl", n)
        parts = split(corpus, tmp / "parts", WORKERS)
        one_each = split(write_corpus(tmp / "one-each.jsonl", WORKERS), tmp / "one-each", WORKERS)
        local = {BEAM: run_beam, DATATROVE: run_datatrove}
        runs = {ONE_CORE: (run_bare_forked, [corpus], n), BOTH_CORES: (run_bare_forked, sorted(parts.iterdir()), n)}
        seconds = fastest(runs | engine_runs(local, parts, one_each, n), args.rounds, tmp / "local")
        if not args.no_slurm:  # its daemons idle beside the others' runs, as Ray's would not
            with running_slurm_cluster() as slurm_start:
                seconds |= fastest(engine_runs({SLURM: run_slurm}, parts, one_each, n), args.rounds, tmp / "slurm")
        ray_start = start_ray()  # only now: its idle processes stay out of the other figures
        seconds |= fastest(engine_runs({RAY: run_ray}, parts, one_each, n), args.rounds, tmp / "ray")
    rate = {name: n / took for name, took in seconds.items() if not name.endswith(ONE_EACH)}
    ideal = 2 * rate[ONE_CORE]
    print(f"documents: {n:,} of ~2k teacher tokens in {WORKERS} files; read -> truncate -> deduplicate -> write, end to end; "
          f"fastest of {args.rounds} rounds")
    print(f"  {ONE_CORE:<34}{rate[ONE_CORE]:8.1f} docs/s")
    print(f"  {'ideal 2 cores (2 x 1 core)':<34}{ideal:8.1f} docs/s")
    print(f"  {BOTH_CORES:<34}{rate[BOTH_CORES]:8.1f} docs/s  ({rate[BOTH_CORES] / ideal:.2f} of the ideal)")
    print(f"  {'engine':<32}{'docs/s':>8}{'of ideal':>10}{'of 2-core bare':>16}{'start+stop':>12}"
          f"{'no dedup docs/s':>17}{'dedup adds':>12}")
    for name in (BEAM, DATATROVE, RAY, *(() if args.no_slurm else (SLURM,))):
        print(f"  {name:<32}{rate[name]:8.1f}{rate[name] / ideal:10.2f}{rate[name] / rate[BOTH_CORES]:16.2f}"
              f"{seconds[name + ONE_EACH]:11.1f}s{rate[name + NO_DEDUP]:17.1f}"
              f"{seconds[name] / seconds[name + NO_DEDUP] - 1:11.0%}")
    print(f"ratio datatrove / Beam: {rate[DATATROVE] / rate[BEAM]:.2f}; Ray / datatrove local: {rate[RAY] / rate[DATATROVE]:.2f}; "
          f"of the 2-core ideal: Beam {rate[BEAM] / ideal:.2f}, datatrove {rate[DATATROVE] / ideal:.2f}, Ray {rate[RAY] / ideal:.2f}")
    print(f"(start+stop: a run of one document per file. The local Ray cluster took {ray_start:.1f} s to start, "
          f"outside the Ray figures)")
    if not args.no_slurm:
        print(f"Slurm / datatrove local: {rate[SLURM] / rate[DATATROVE]:.2f}, of the 2-core ideal {rate[SLURM] / ideal:.2f}; "
              f"submitting a run (plan, lock, 3 x sbatch) took {min(SUBMISSIONS):.2f} s at the fastest, "
              f"{sorted(SUBMISSIONS)[len(SUBMISSIONS) // 2]:.2f} s the median, inside the Slurm figures"
              + (f"; the cluster took {slurm_start:.1f} s to start, outside them" if slurm_start else ""))


if __name__ == "__main__":
    main()
