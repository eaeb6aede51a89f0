"""The output folder of a run, and the writes both engines share.

    OUT/mds/<source>/part-NNNNN/   one MDS part per writer task; OUT/mds/<source>/index.json merges them
    OUT/rejects/<source>/part-NNNNN.jsonl   what was set aside, with the reason
    OUT/manifest.parquet           one row per sample, every scalar field, no text
    OUT/streams.yaml               the Composer `streams` block, one stream per source
    OUT/summary.json               counts, tokens, rejects, wall time

OUT is a local folder or any fsspec URL (`gs://`, `s3://`, ...: workers write
there directly, as on Dataflow). Parts are named by a stable hash of the record
id, so a retried task rewrites its own part and never writes a record twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from tpt.config import OutputConfig, parse_size
from tpt.io.mds import ShardWriter
from tpt.io.storage import Folder
from tpt.schema import ARROW_TYPES, COLUMNS, MANIFEST_SCHEMA, MDS_TYPES, Record, Reject, manifest_table, mds_value

READERS = 16  # reject files read at once


def part_of(key: str, parts: int) -> int:
    """The write part a record belongs to: stable across processes and runs."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % parts


def part_name(index: int) -> str:
    return f"part-{index:05d}"


class OutputLayout(Folder):
    """Where each file of a run lives: names relative to OUT."""

    mds = "mds"
    rejects = "rejects"
    reject_files = f"{rejects}/*/*.jsonl"
    manifest_parts = ".manifest-parts"
    manifest_merged = ".manifest-merged"  # marks a merge whose parts are not all removed yet
    manifest = "manifest.parquet"
    streams = "streams.yaml"
    summary = "summary.json"


def write_part(layout: OutputLayout, source: str, part: str, records: Iterable[Record], fields: list[str], output: OutputConfig) -> int:
    """Write one MDS part of a source and its manifest rows; returns the number of samples."""
    records = sorted(records, key=lambda r: r.id)
    columns = {name: MDS_TYPES[name] for name in fields}
    with (layout.staged_folder(f"{layout.mds}/{source}/{part}") as directory,
          ShardWriter(directory, columns, output.compression, parse_size(output.size_limit)) as writer):
        for record in records:
            writer.write(mds_sample(record, fields))
    layout.write_parquet(f"{layout.manifest_parts}/{source}/{part}.parquet", manifest_table(records))
    return len(records)


def mds_sample(record: Record, fields: list[str]) -> dict:
    """A record as an MDS sample: its `fields`, in the encodings of `MDS_TYPES` (`text` is already [d; t] once thought)."""
    sample = {}
    for name in fields:
        value = getattr(record, name)
        if value is None:
            raise ValueError(f"record {record.id!r} of {record.source!r}: field {name!r} is unset, but the shards store it")
        sample[name] = mds_value(name, value)
    return sample


def sample_columns(shard: pa.Table) -> pa.Table:
    """A shard's columns (tpt.io.mds.decode_shard) in the record's own types: the inverse of `mds_sample`."""
    columns = {}
    for name in shard.column_names:
        decode, column = COLUMNS[name].from_mds, shard.column(name)
        columns[name] = (decode(column) if decode else column).cast(ARROW_TYPES[name])
    return pa.table(columns)


def write_rejects(layout: OutputLayout, source: str, part: str, rejects: Iterable[Reject]) -> int:
    """Write one part of a source's rejects as JSON lines; returns how many."""
    rows = sorted((r.to_dict() for r in rejects), key=lambda r: (r["stage"], r["id"] or "", r["location"] or ""))
    layout.write_text(f"{layout.rejects}/{source}/{part}.jsonl", "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return len(rows)


def value_counts(column: pa.ChunkedArray) -> Counter:
    """How often each value of a manifest column occurs (None: missing), counted by Arrow: millions of rows never
    become a Python list."""
    counts = column.value_counts()
    return Counter(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())))


def read_rejects(layout: OutputLayout) -> list[dict]:
    """Every row of OUT/rejects/ (summary.json counts them with `RejectCounts`, which never holds them)."""
    return [row for name in layout.glob(layout.reject_files) for row in layout.json_lines(name)]


@dataclass
class RejectCounts:
    """What summary.json takes of OUT/rejects/, counted file by file, a line at a time: a run that set most of its
    corpus aside (duplicates, mostly) is never held in memory, only these counts."""

    reasons: Counter = field(default_factory=Counter)  # (source, stage, reason) -> rejects
    copies: defaultdict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # stage -> kept id -> copies

    @classmethod
    def read(cls, layout: OutputLayout) -> RejectCounts:
        """Every reject file counted, several at once: an object store is slow to answer each read, not many."""
        counts = cls()
        with ThreadPoolExecutor(READERS) as pool:
            for part in pool.map(lambda name: cls.of_rows(layout.json_lines(name)), layout.glob(layout.reject_files)):
                counts.reasons.update(part.reasons)
                for stage, kept in part.copies.items():
                    counts.copies[stage].update(kept)
        return counts

    @classmethod
    def of_rows(cls, rows: Iterable[dict]) -> RejectCounts:
        counts = cls()
        for row in rows:
            counts.reasons[row["source"], row["stage"], row["reason"]] += 1
            if row.get("duplicate_of") is not None:
                counts.copies[row["stage"]][row["duplicate_of"]] += 1
        return counts

    def total(self, source: str | None = None) -> int:
        return sum(count for (of, _, _), count in self.reasons.items() if source in (None, of))

    def by_stage(self, source: str | None = None) -> dict[str, dict[str, int]]:
        """Rejects counted by stage, then reason: of one source, or of all."""
        counts: defaultdict[str, Counter] = defaultdict(Counter)
        for (of, stage, reason), count in self.reasons.items():
            if source in (None, of):
                counts[stage][reason] += count
        return {stage: dict(sorted(reasons.items())) for stage, reasons in sorted(counts.items())}


def merge_manifest(layout: OutputLayout) -> pa.Table:
    """Merge the manifest parts into OUT/manifest.parquet, sorted by source and id.

    Safe to repeat on any filesystem: the parts are removed only once the manifest
    and a marker saying so are written, and the marker only once the parts are gone.
    So a merge cut short is redone from all the parts, and a finished one is read back.
    """
    table = None
    if not layout.exists(layout.manifest_merged):
        parts = layout.glob(f"{layout.manifest_parts}/*/*.parquet")
        if parts or not layout.exists(layout.manifest):
            tables = [pq.read_table(pa.BufferReader(data), schema=MANIFEST_SCHEMA) for data in layout.read_many(parts)]
            table = pa.concat_tables(tables) if tables else MANIFEST_SCHEMA.empty_table()
            table = table.sort_by([("source", "ascending"), ("id", "ascending")])
            layout.write_parquet(layout.manifest, table)
            layout.write_text(layout.manifest_merged, "")
    layout.remove(layout.manifest_parts, layout.manifest_merged)
    return table if table is not None else layout.read_parquet(layout.manifest)
