"""A finished run output of any size without running the pipeline's stages: records written by tpt's own
`write_part` into the run's staging folder and finished by tpt's own `finalize` (merged indexes, manifest,
streams.yaml, summary.json with the config), exactly as `tpt run` leaves them.

`write_run` makes realistic samples at scale: `synthetic_manifest`'s rows (labels, lengths) with real text,
each document and thinking a slice of the demo corpus; `synthetic_manifest` alone is what bench_report times.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tests.corpora import demo_texts
from tpt.config import GenerateConfig, OutputConfig, PipelineConfig, SourceConfig
from tpt.dedup import STAGE
from tpt.io.finalize import finalize
from tpt.io.output import OutputLayout, part_name, write_part
from tpt.io.publish import staged
from tpt.schema import MANIFEST_SCHEMA, MDS_TYPES, Record, stage_fields

SEPARATOR = "\n\n"


def write_records(out: Path | str, records: Iterable[Record], config: PipelineConfig, parts_of: int = 100_000) -> dict:
    """Finish a run at `out` from `records` (sorted by source): each source's records go to MDS parts of
    `parts_of` records, every field the stages write to the shards; returns the run's summary."""
    layout = OutputLayout(str(out))
    fields = [name for name in MDS_TYPES if name not in stage_fields(STAGE)]  # a duplicate's marks stay in the manifest
    staging, part, source, batch = staged(layout), 0, None, []
    for record in chain(records, [None]):  # None: the end, which writes the last part
        if batch and (record is None or record.source != source or len(batch) == parts_of):
            write_part(staging, source, part_name(part), batch, fields, config.output)
            part, batch = (0 if record is None or record.source != source else part + 1), []
        if record is not None:
            source = record.source
            batch.append(record)
    return finalize(layout, config, [], 1.0, {"name": "synthetic"})


def write_run(out: Path, samples: int, doc_chars: int = 300, thinking_chars: int = 400, seed: int = 0,
              parts_of: int = 100_000) -> Path:
    """A run at `out` of `samples` realistic samples [d; t] in three sources, with the sources' licenses named."""
    manifest = synthetic_manifest(samples, seed).sort_by([("source", "ascending"), ("id", "ascending")])
    sources = sorted(set(manifest.column("source").to_pylist()))
    config = PipelineConfig(sources=[SourceConfig(name=s, path=f"data/{s}.jsonl", license="cc-by-4.0") for s in sources],
                            generate=GenerateConfig(separator=SEPARATOR), output=OutputConfig(dir=str(out)))
    write_records(out, _records(manifest, doc_chars, thinking_chars, seed), config, parts_of)
    return out


def _records(manifest, doc_chars: int, thinking_chars: int, seed: int) -> Iterator[Record]:
    corpus, rng = SEPARATOR.join(demo_texts()), random.Random(seed)
    for batch in manifest.to_batches(10_000):
        for row in batch.to_pylist():
            start = rng.randrange(len(corpus) - doc_chars - thinking_chars)
            labels = {axis: row[axis] or "" for axis in ("domain", "audience", "reasoning")}  # the shards store no nulls
            record = Record(**{**row, **labels, "text": corpus[start:start + doc_chars]})
            yield record.with_thinking(corpus[start + doc_chars:start + doc_chars + thinking_chars], SEPARATOR)


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
        **{name: pa.nulls(rows, MANIFEST_SCHEMA.field(name).type) for name in ("duplicate_of", "duplicate_kind", "duplicate_similarity")},
    }, schema=MANIFEST_SCHEMA)


def _strings(indices: np.ndarray, labels: list[str | None]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(labels, pa.string())).cast(pa.string())
