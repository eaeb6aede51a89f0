"""Time `tpt report` and a `tpt stats` group-by over a synthetic 10-million-row manifest.

The manifest has realistic shapes: log-normal document lengths truncated at 2,048
tokens, 14 domains (some unlabelled), reasoning intensity correlated with the
domain, thinking length growing with reasoning (about 1.5x from none to advanced)
and capped at 8,192 tokens (finish_reason "length"), 3% flagged thinking.
Goal (issue 6): the report over 10M rows in <= 10 s on 2 cores.

    .venv/bin/python benchmarks/bench_report.py [--rows 10000000] [--threads 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tpt.schema import MANIFEST_SCHEMA

DOMAINS = {  # label: (share of documents, mean reasoning level 0..3, thinking length factor)
    "mathematics": (0.05, 2.4, 1.25), "physics": (0.04, 2.2, 1.2), "chemistry": (0.03, 1.9, 1.1),
    "biology": (0.05, 1.6, 1.05), "medicine & health": (0.07, 1.4, 1.0), "computer science & software": (0.10, 1.9, 1.1),
    "engineering": (0.04, 1.8, 1.05), "economics & finance": (0.07, 1.3, 0.95), "law & government": (0.06, 1.1, 0.95),
    "history": (0.08, 0.8, 0.9), "literature & arts": (0.09, 0.7, 0.85), "news & current events": (0.14, 0.5, 0.85),
    "lifestyle & hobbies": (0.16, 0.3, 0.8), None: (0.02, 1.0, 1.0),
}
AUDIENCES = ["general public", "school (K-12)", "undergraduate", "graduate / expert"]
LEVELS = ["none", "basic", "intermediate", "advanced"]
LEVEL_FACTOR = np.array([1.0, 1.15, 1.3, 1.5])
SOURCES = (["web", "books", "reference"], [0.6, 0.15, 0.25])


def synthetic_manifest(rows: int, seed: int = 0) -> pa.Table:
    """A manifest of `rows` samples, built column by column with numpy."""
    rng = np.random.default_rng(seed)
    labels = list(DOMAINS)
    shares, reasoning_mean, length_factor = (np.array([DOMAINS[d][i] for d in labels]) for i in range(3))
    domain = rng.choice(len(labels), rows, p=shares / shares.sum())
    reasoning = np.clip(np.rint(reasoning_mean[domain] + rng.normal(0, 0.8, rows)), 0, 3).astype(np.int8)
    audience = np.clip(np.rint(reasoning * 0.7 + rng.normal(0.5, 0.9, rows)), 0, 3).astype(np.int8)
    doc_tokens = np.minimum(rng.lognormal(6.4, 1.1, rows), 2**31 - 1).astype(np.int32)
    kept = np.minimum(doc_tokens, 2048)
    raw = rng.lognormal(6.9, 0.55, rows) * LEVEL_FACTOR[reasoning] * length_factor[domain]
    thinking = np.minimum(raw, 8192).astype(np.int32)
    flagged = rng.random(rows) < 0.03
    flag_offsets = np.concatenate(([0], np.cumsum(flagged))).astype(np.int32)
    return pa.table({
        "id": pc.cast(pa.array(np.arange(rows)), pa.string()),
        "source": _strings(rng.choice(len(SOURCES[0]), rows, p=SOURCES[1]), SOURCES[0]),
        "doc_tokens": doc_tokens, "kept_tokens": kept, "truncated": doc_tokens > 2048,
        "domain": _strings(domain, labels), "domain_score": rng.random(rows, dtype=np.float32),
        "audience": _strings(audience, AUDIENCES), "audience_score": rng.random(rows, dtype=np.float32),
        "reasoning": _strings(reasoning, LEVELS), "reasoning_score": rng.random(rows, dtype=np.float32),
        "thinking_tokens": thinking,
        "finish_reason": _strings((raw >= 8192).astype(np.int8), ["stop", "length"]),
        "thinking_flags": pa.ListArray.from_arrays(flag_offsets, pa.array(["repetition"] * int(flagged.sum()), pa.string())),
        "sample_tokens": kept + thinking + 4,
        "thinking_budget": np.full(rows, 8192, np.int32),
    }, schema=MANIFEST_SCHEMA)


def _strings(indices: np.ndarray, labels: list[str | None]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(labels, pa.string())).cast(pa.string())


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (the goal is stated for 2 cores)")
    parser.add_argument("--keep", help="write the synthetic run here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-report-"))
    run = folder / "run"
    run.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pq.write_table(synthetic_manifest(args.rows), run / "manifest.parquet")
    (run / "summary.json").write_text(json.dumps({"schema_version": 1}))
    size = (run / "manifest.parquet").stat().st_size / 2**20
    print(f"built a {args.rows:,}-row manifest ({size:,.0f} MiB) in {time.perf_counter() - started:.1f} s")

    tpt = [sys.executable, "-m", "tpt.cli"]
    load_before = os.getloadavg()[0]
    report = timed([*tpt, "report", str(run), "--output", str(folder / "report"), "--threads", str(args.threads)])
    group_by = timed([*tpt, "stats", str(run), "--threads", str(args.threads), "--sql",
                      "SELECT domain, reasoning, count(*), avg(thinking_tokens), quantile_cont(thinking_tokens, 0.9) "
                      "FROM samples GROUP BY ALL"])
    load_after = os.getloadavg()[0]
    print(f"cores: {os.cpu_count()}, DuckDB threads: {args.threads}, load average (1 min) before/after: {load_before:.1f}/{load_after:.1f}")
    print(f"tpt report:           {report:6.2f} s  {args.rows / report:>13,.0f} rows/s  (goal 10 s: {report / 10:.2f}x of the budget)")
    print(f"tpt stats (group-by): {group_by:6.2f} s  {args.rows / group_by:>13,.0f} rows/s  (report / group-by: {report / group_by:.1f}x)")
    if not args.keep:
        shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
