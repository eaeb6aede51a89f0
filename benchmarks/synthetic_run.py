"""A finished run output of any size without running the pipeline's stages: records written by tpt's own
`write_part` into the run's staging folder and finished by tpt's own `finalize` (merged indexes, manifest,
streams.yaml, summary.json with the config), exactly as `tpt run` leaves them.

`write_run` makes realistic samples at scale: bench_report's synthetic manifest rows (labels, lengths) with
real text, each document and thinking a slice of the demo corpus.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

from benchmarks.bench_report import synthetic_manifest
from benchmarks.corpus import demo_texts
from tpt.config import GenerateConfig, OutputConfig, PipelineConfig, SourceConfig
from tpt.io.finalize import finalize
from tpt.io.output import OutputLayout, part_name, write_part
from tpt.io.publish import staged
from tpt.dedup import STAGE
from tpt.schema import MDS_TYPES, Record, stage_fields

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
