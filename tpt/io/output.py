"""The output folder of a run, and the writes both engines share.

    OUT/mds/<source>/part-NNNNN/   one MDS part per writer task; OUT/mds/<source>/index.json merges them
    OUT/rejects/<source>/part-NNNNN.jsonl   what was set aside, with the reason
    OUT/manifest.parquet           one row per sample, every scalar field, no text
    OUT/streams.yaml               the Composer `streams` block, one stream per source
    OUT/summary.json               counts, tokens, rejects, wall time

Parts are named by a stable hash of the record id, so a retried task rewrites
its own part and never writes a record twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from streaming import MDSWriter

from tpt.config import OutputConfig, parse_size
from tpt.schema import MANIFEST_SCHEMA, MDS_TYPES, Record, Reject, manifest_table

MANIFEST_PARTS = ".manifest-parts"


def part_of(key: str, parts: int) -> int:
    """The write part a record belongs to: stable across processes and runs."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % parts


def part_name(index: int) -> str:
    return f"part-{index:05d}"


class OutputLayout:
    """Where each file of a run lives."""

    def __init__(self, root: str | Path):
        if "://" in str(root):
            raise ValueError(f"output folder {root}: outputs are written through local paths; "
                             "use a local folder or one every worker mounts (URL outputs are not supported yet)")
        self.root = Path(root).resolve()
        self.mds = self.root / "mds"
        self.rejects = self.root / "rejects"
        self.manifest_parts = self.root / MANIFEST_PARTS
        self.manifest = self.root / "manifest.parquet"
        self.streams = self.root / "streams.yaml"
        self.summary = self.root / "summary.json"

    def clear_previous_outputs(self) -> None:
        """Remove what an earlier run wrote, so a rerun never mixes old and new parts.

        Resumable stage state (e.g. OUT/thinking/) is kept.
        """
        for path in (self.mds, self.rejects, self.manifest_parts):
            shutil.rmtree(path, ignore_errors=True)
        for path in (self.manifest, self.streams, self.summary):
            path.unlink(missing_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)


def write_part(layout: OutputLayout, source: str, part: str, records: Iterable[Record], fields: list[str], output: OutputConfig,
               separator: str | None = None) -> int:
    """Write one MDS part of a source and its manifest rows; returns the number of samples.

    `separator` (config.generate.separator) joins a document and its thinking into the sample's `text`.
    """
    records = sorted(records, key=lambda r: r.id)
    directory = layout.mds / source / part
    shutil.rmtree(directory, ignore_errors=True)
    columns = {name: MDS_TYPES[name] for name in fields}
    with MDSWriter(out=str(directory), columns=columns, compression=output.compression, size_limit=parse_size(output.size_limit)) as writer:
        for record in records:
            writer.write(mds_sample(record, fields, separator))
    _write_parquet_atomically(manifest_table(records), layout.manifest_parts / source / f"{part}.parquet")
    return len(records)


def mds_sample(record: Record, fields: list[str], separator: str | None = None) -> dict:
    """A record as an MDS sample: its `fields`, in the encodings of `MDS_TYPES`; `text` is [d; t] once thinking exists."""
    sample = {}
    for name in fields:
        value = getattr(record, name)
        if value is None:
            raise ValueError(f"record {record.id!r} of {record.source!r}: field {name!r} is unset, but the shards store it")
        if name == "text" and record.thinking is not None:
            if separator is None:
                raise ValueError(f"record {record.id!r} of {record.source!r} has thinking, but no separator was given to join it to the document")
            value = record.text + separator + record.thinking
        elif name == "thinking_flags":
            value = ",".join(value)
        elif name == "truncated":
            value = int(value)
        sample[name] = value
    return sample


def write_rejects(layout: OutputLayout, source: str, part: str, rejects: Iterable[Reject]) -> int:
    """Write one part of a source's rejects as JSON lines; returns how many."""
    rows = sorted((r.to_dict() for r in rejects), key=lambda r: (r["stage"], r["id"] or "", r["location"] or ""))
    path = layout.rejects / source / f"{part}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return len(rows)


def _write_parquet_atomically(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read_rejects(layout: OutputLayout) -> list[dict]:
    rows = []
    for path in sorted(layout.rejects.glob("*/*.jsonl")):
        with open(path, encoding="utf-8") as stream:
            rows.extend(json.loads(line) for line in stream)
    return rows


def merge_manifest(layout: OutputLayout) -> pa.Table:
    """Merge the manifest parts into OUT/manifest.parquet, sorted by source and id.

    Safe to repeat: the parts are removed only once the manifest is in place, so a
    merge cut short is redone from the parts, and a finished one is read back.
    """
    spent = layout.manifest_parts.with_name(MANIFEST_PARTS + ".merged")
    shutil.rmtree(spent, ignore_errors=True)
    parts = sorted(layout.manifest_parts.glob("*/*.parquet"))
    if not parts and layout.manifest.exists():
        return pq.read_table(layout.manifest)
    table = pa.concat_tables([pq.read_table(p, schema=MANIFEST_SCHEMA) for p in parts]) if parts else MANIFEST_SCHEMA.empty_table()
    table = table.sort_by([("source", "ascending"), ("id", "ascending")])
    _write_parquet_atomically(table, layout.manifest)
    if layout.manifest_parts.exists():
        layout.manifest_parts.rename(spent)  # in one step: the parts are either all there or all merged
        shutil.rmtree(spent)
    return table
