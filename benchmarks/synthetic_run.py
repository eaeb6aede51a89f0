"""A finished run output of any size without running the pipeline: real-text samples [d; t] written by tpt's own
MDS writer, their manifest, and a summary recording the config, as `tpt run` leaves them.

The manifest is benchmarks/bench_report.py's synthetic one (realistic labels and lengths); each sample's document
and thinking are slices of the demo corpus of about `doc_chars` and `thinking_chars` characters.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.bench_report import synthetic_manifest
from benchmarks.corpus import demo_texts
from tpt.config import GenerateConfig, PipelineConfig, SourceConfig
from tpt.io.finalize import recorded_config
from tpt.io.mds import ShardWriter, merge_indexes
from tpt.io.output import mds_sample, part_name
from tpt.schema import MDS_TYPES, Record

SEPARATOR = "\n\n"
PARTS = 2


def write_run(out: Path, samples: int, doc_chars: int = 300, thinking_chars: int = 400, seed: int = 0) -> Path:
    """A run folder at `out` with `samples` samples over the manifest's sources, `PARTS` MDS parts per source."""
    manifest = synthetic_manifest(samples, seed).sort_by([("source", "ascending"), ("id", "ascending")])
    corpus = SEPARATOR.join(demo_texts())
    rng = random.Random(seed)
    fields = list(MDS_TYPES)
    sources = sorted(set(manifest.column("source").to_pylist()))
    for source in sources:
        rows = manifest.filter(pc.equal(manifest.column("source"), source))
        bounds = [rows.num_rows * part // PARTS for part in range(PARTS + 1)]
        for part in range(PARTS):
            folder = out / "mds" / source / part_name(part)
            with ShardWriter(str(folder), {name: MDS_TYPES[name] for name in fields}, "zstd", 64_000_000) as writer:
                for batch in rows.slice(bounds[part], bounds[part + 1] - bounds[part]).to_batches(10_000):
                    for row in batch.to_pylist():
                        start = rng.randrange(len(corpus) - doc_chars - thinking_chars)
                        labels = {axis: row[axis] or "" for axis in ("domain", "audience", "reasoning")}  # shards store no nulls
                        record = Record(**{**row, **labels, "text": corpus[start:start + doc_chars]})
                        writer.write(mds_sample(record.with_thinking(corpus[start + doc_chars:start + doc_chars + thinking_chars],
                                                                     SEPARATOR), fields))
        parts = [(part_name(p), (out / "mds" / source / part_name(p) / "index.json").read_bytes()) for p in range(PARTS)]
        (out / "mds" / source / "index.json").write_text(merge_indexes(parts))
    pq.write_table(manifest, out / "manifest.parquet")
    config = PipelineConfig(sources=[SourceConfig(name=s, path=f"data/{s}.jsonl", license="cc-by-4.0") for s in sources],
                            generate=GenerateConfig(separator=SEPARATOR))
    summary = {"schema_version": 1, "config": recorded_config(config),
               "totals": {"written": samples}, "sources": {s: {"written": pc.sum(pc.equal(manifest.column("source"), s)).as_py()}
                                                           for s in sources}}
    (out / "summary.json").write_text(json.dumps(summary))
    return out
