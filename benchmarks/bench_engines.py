"""Documents/s of the CPU stages (read -> deduplicate -> truncate -> write, finalize) on Beam and on datatrove.

    python benchmarks/bench_engines.py [--documents 2000]

One run, one corpus of ~2k-token documents joined from the demo's real text,
split into two files: Beam on the DirectRunner (multi_processing, 2 workers),
datatrove on the local executor (2 tasks, 2 workers) and datatrove on Ray (2
tasks on a local Ray cluster of 2 CPUs, started before the clock starts: its
start-up is printed apart), each timed end to end from the call to the summary
on disk, next to the bare-primitives floor of bench_cpu_stages (json + batched
encode + MDSWriter in a tight loop, one core) and twice that floor, the most
two ideal cores could do.
"""

from __future__ import annotations

import os

os.environ["RAYON_NUM_THREADS"] = "1"  # one core per worker process: before tokenizers starts its pool

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_cpu_stages import BATCH, MAX_TOKENS, run_bare, timed  # noqa: E402
from benchmarks.corpus import write_corpus  # noqa: E402
from tpt.config import PipelineConfig  # noqa: E402

WORKERS = 2
RAY = "datatrove Ray, 2 tasks"


def split(corpus: Path, folder: Path, files: int) -> Path:
    """The corpus as `files` files of whole lines in `folder`, so either engine can read them in parallel."""
    lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    folder.mkdir()
    for number in range(files):
        (folder / f"part{number}.jsonl").write_text("".join(lines[number::files]), encoding="utf-8")
    return folder


def engine_config(parts: Path, out: Path) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "sources": [{"name": "bench", "path": str(parts / "part*.jsonl")}],
        "truncate": {"max_doc_tokens": MAX_TOKENS, "batch_size": BATCH},
        "output": {"dir": str(out), "parts": WORKERS},
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


def start_ray() -> float:
    """Seconds to start a local Ray cluster of WORKERS CPUs, which the Ray run then uses (`tpt run` alone would start
    one of all CPUs for the run)."""
    import ray

    started = time.perf_counter()
    ray.init(address="local", num_cpus=WORKERS, log_to_driver=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from loguru import logger  # datatrove's task logs: keep the benchmark's output to its numbers

    logger.remove()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = write_corpus(tmp / "corpus.jsonl", args.documents)
        parts = split(corpus, tmp / "parts", WORKERS)
        rates = {}
        import streaming  # noqa: F401  (the floor's MDSWriter: imported before its clock starts)

        docs, seconds = timed(run_bare, corpus, tmp / "bare")
        rates["bare primitives, 1 core"] = docs / seconds
        engines = (("Beam DirectRunner, 2 workers", run_beam), ("datatrove local, 2 tasks", run_datatrove), (RAY, run_ray))
        for name, engine in engines:
            if engine is run_ray:
                ray_start = start_ray()  # only now: its idle processes stay out of the other engines' figures
            docs, seconds = timed(engine, engine_config(parts, tmp / name.split(",")[0].replace(" ", "-")))
            assert docs == args.documents, f"{name} wrote {docs} of {args.documents} documents"
            rates[name] = docs / seconds
    floor = rates["bare primitives, 1 core"]
    print(f"documents: {args.documents:,} of ~2k teacher tokens in {WORKERS} files; read -> truncate -> write, end to end")
    for name, rate in rates.items():
        print(f"  {name:<32}{rate:9.1f} docs/s")
    print(f"  {'ideal 2 cores (2 x bare)':<32}{2 * floor:9.1f} docs/s")
    beam, datatrove, ray = rates["Beam DirectRunner, 2 workers"], rates["datatrove local, 2 tasks"], rates[RAY]
    print(f"ratio datatrove / Beam: {datatrove / beam:.2f}; Ray / datatrove local: {ray / datatrove:.2f}; "
          f"of the 2-core ideal: Beam {beam / (2 * floor):.2f}, datatrove {datatrove / (2 * floor):.2f}, Ray {ray / (2 * floor):.2f}")
    print(f"(the local Ray cluster took {ray_start:.1f} s to start, outside the Ray figure)")


if __name__ == "__main__":
    main()
