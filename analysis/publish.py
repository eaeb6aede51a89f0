"""`tpt publish`: a run's samples as a Hugging Face Hub dataset, Parquet files and a dataset card.

    DEST/README.md                              the card: YAML metadata (configs, license, ...) and its tables
    DEST/data/<source>/train-NNNNN.parquet      one config per source, split `train`

Every file holds `text` ([d; t], what the model trains on), `document`, `thinking` and every scalar field of the
manifest, in the record's own Arrow types. Files close at `file_bytes` (uncompressed) and row groups at
`row_group_bytes` in memory, so the Hub's viewer can read them (it refuses row groups over ~286 MiB); the
Parquet page index is written, so readers can skip pages.

The samples stream shard by shard from the run's MDS shards (tpt.analysis.samples), decoded in threads while
the previous row group is compressed and written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tpt.analysis.card import CARD, TOKEN_COLUMNS, render_card
from tpt.analysis.runs import AnalysisError, Run, connect
from tpt.analysis.samples import source_shards, with_documents
from tpt.analysis.stats import analyse
from tpt.config import PipelineConfig
from tpt.io.mds import read_shards
from tpt.io.output import sample_columns
from tpt.io.owned import replacing_folder
from tpt.io.storage import Folder
from tpt.progress import Progress
from tpt.schema import ARROW_TYPES, SCALAR_FIELDS, SCHEMA_VERSION

PUBLISH = "tpt publish"  # the owner of a published dataset's folder (tpt.io.owned)
DATA = "data"
SPLIT = "train"
PUBLISHED_SCHEMA = pa.schema(
    [pa.field(name, ARROW_TYPES.get(name, pa.string())) for name in ("id", "source", "text", "document", "thinking")]
    + [pa.field(name, ARROW_TYPES[name]) for name in SCALAR_FIELDS if name not in ("id", "source")],
    metadata={"tpt_schema_version": str(SCHEMA_VERSION)},
)
# How the Parquet files are written; benchmarks/bench_publish.py writes its bare baseline with the same options.
# Dictionaries only for the columns of few values: on text they cost the writer time and are dropped anyway.
WRITE_OPTIONS = {"compression": "zstd", "write_page_index": True,
                 "use_dictionary": ["source", "domain", "audience", "reasoning", "finish_reason", "thinking_flags"]}
FILE_BYTES = 500 * 2**20  # uncompressed Arrow bytes per file (the size `datasets.push_to_hub` shards at)
ROW_GROUP_BYTES = 100 * 2**20  # Arrow bytes per row group
PROGRESS_SECONDS = 10.0


def run_config(run: Run, config: PipelineConfig | None) -> PipelineConfig:
    """The config the card describes: the one given, or the one the run recorded in its summary."""
    if config is not None:
        return config
    recorded = run.summary.get("config")
    if recorded is None:
        raise AnalysisError(f"{run.location}: its summary.json records no config (a run before tpt recorded it); "
                            "pass the run's config with --config")
    return PipelineConfig.model_validate(recorded)


def publish(run: Run, dest: str, config: PipelineConfig | None = None, file_bytes: int = FILE_BYTES,
            row_group_bytes: int = ROW_GROUP_BYTES) -> dict[str, Any]:
    """Write `run` as a dataset at `dest` (a folder or fsspec URL); returns what was written, per source."""
    config = run_config(run, config)
    shards = source_shards(run)
    con = connect([run], threads=1)  # a small query beside the writing, which wants the cores
    expected = dict(con.sql("SELECT source, count(*) FROM samples GROUP BY source").fetchall())
    found = {source: sum(shard["samples"] for _, shard in listed) for source, listed in shards.items()}
    if {s: n for s, n in found.items() if n} != expected:
        raise AnalysisError(f"{run.location}: its shards hold {found} samples per source, its manifest {expected}; "
                            "publish a finished run")
    _check_manifest_only_columns(con, shards)
    with ThreadPoolExecutor(1) as pool, _destination(dest) as target:
        card_figures = pool.submit(_card_figures, con)  # DuckDB, beside the writing
        progress = Progress("publish", total=sum(found.values()), interval=PROGRESS_SECONDS)
        written = _write(target, shards, _separator(config), file_bytes, row_group_bytes, progress)
        target.write_text(CARD, render_card(run, config, *card_figures.result(), written))
    return written


def _card_figures(con) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """The card's statistics (Figure 4 per class) and token sums per source, from the manifest."""
    sums = ", ".join(f"coalesce(sum({key}), 0)::BIGINT AS {key}" for key in TOKEN_COLUMNS)
    tokens = con.sql(f"SELECT source, {sums} FROM samples GROUP BY source").to_arrow_table().to_pylist()
    return analyse(con), {row["source"]: row for row in tokens}


def _separator(config: PipelineConfig) -> str:
    return config.generate.separator if config.generate else ""


def _check_manifest_only_columns(con, shards: dict[str, list]) -> None:
    """A manifest column the shards do not store (output.columns left it out) would be published as nulls: refuse."""
    stored = {name for listed in shards.values() for _, shard in listed[:1] for name in shard["column_names"]}
    missing = [name for name in SCALAR_FIELDS if name not in stored]
    if not missing:
        return
    present = [f"count_if(len({name}) > 0)" if pa.types.is_list(ARROW_TYPES[name]) else f"count({name})" for name in missing]
    counts = con.sql("SELECT " + ", ".join(present) + " FROM samples").fetchall()[0]
    lost = [name for name, count in zip(missing, counts) if count]
    if lost:
        raise AnalysisError(f"the shards do not store {lost} (the run's output.columns left them out), but the manifest "
                            "has values for them; rerun with those columns to publish them")


def publishable(samples: pa.Table, separator: str) -> pa.Table:
    """A decoded shard as the published columns: `document` split off, every field in its type, one the shards do
    not store as the manifest has it (null; no thinking flags: an empty list)."""
    table = with_documents(sample_columns(samples), separator)
    return pa.table([table.column(f.name) if f.name in table.column_names else _absent(f.type, table.num_rows)
                     for f in PUBLISHED_SCHEMA], schema=PUBLISHED_SCHEMA)


def _absent(kind: pa.DataType, rows: int) -> pa.Array:
    if pa.types.is_list(kind):
        return pa.ListArray.from_arrays(pa.array(np.zeros(rows + 1, np.int32)), pa.array([], kind.value_type))
    return pa.nulls(rows, kind)


def _write(target: Folder, shards: dict[str, list], separator: str, file_bytes: int, row_group_bytes: int,
           progress: Progress) -> dict[str, dict[str, Any]]:
    """Every source's samples into its Parquet files, in one stream of shards across the sources."""
    listed = [(source, shard) for source, source_shards in shards.items() for shard in source_shards if shard[1]["samples"]]
    written: dict[str, dict[str, Any]] = {}
    files = None
    with tempfile.TemporaryDirectory(prefix="tpt-publish-") as scratch:
        tables = read_shards([shard for _, shard in listed], convert=lambda samples: publishable(samples, separator))
        for (source, _), table in zip(listed, tables):
            if source not in written:
                if files is not None:
                    files.close()
                written[source] = {"samples": 0, "files": []}
                files = _SourceFiles(target, source, written[source]["files"], scratch, file_bytes, row_group_bytes)
            files.add(table)
            written[source]["samples"] += table.num_rows
            progress.update(table.num_rows, bytes_read=table.nbytes)
        if files is not None:
            files.close()
    return written


class _SourceFiles:
    """A source's Parquet files: row groups of about `row_group_bytes`, a new file past `file_bytes`."""

    def __init__(self, target: Folder, source: str, names: list[str], scratch: str, file_bytes: int, row_group_bytes: int):
        self.target, self.source, self.names, self.scratch = target, source, names, scratch
        self.file_bytes, self.row_group_bytes = file_bytes, row_group_bytes
        self.writer: _FileWriter | None = None
        self.pending: list[pa.Table] = []
        self.pending_bytes = 0

    def add(self, table: pa.Table) -> None:
        rows = rows_within(table, self.row_group_bytes)
        for start in range(0, table.num_rows, rows):
            piece = table.slice(start, rows)
            if self.pending and self.pending_bytes + piece.nbytes > self.row_group_bytes:
                self._flush()
            self.pending.append(piece)
            self.pending_bytes += piece.nbytes

    def close(self) -> None:
        self._flush()
        if self.writer is not None:
            self.writer.close()

    def _flush(self) -> None:
        if not self.pending:
            return
        if self.writer is None:
            self.names.append(f"{DATA}/{self.source}/{SPLIT}-{len(self.names):05d}.parquet")
            self.writer = _FileWriter(self.target, self.names[-1], self.scratch)
        self.writer.write(pa.concat_tables(self.pending))
        self.pending, self.pending_bytes = [], 0
        if self.writer.bytes >= self.file_bytes:
            self.writer.close()
            self.writer = None


def rows_within(table: pa.Table, limit: int) -> int:
    """Rows of `table` that fit in `limit` bytes on average (at least one)."""
    return max(1, int(table.num_rows * limit / max(table.nbytes, 1)))


class _FileWriter:
    """One Parquet file of the dataset, written locally (in place, or in scratch space for a URL) and put whole."""

    def __init__(self, target: Folder, name: str, scratch: str):
        self.target, self.name = target, name
        self.local = target.path(name) if target.is_local else os.path.join(scratch, os.path.basename(name))
        os.makedirs(os.path.dirname(self.local), exist_ok=True)
        self.writer = pq.ParquetWriter(self.local, PUBLISHED_SCHEMA, **WRITE_OPTIONS)
        self.bytes = 0

    def write(self, group: pa.Table) -> None:
        self.writer.write_table(group, row_group_size=group.num_rows)
        self.bytes += group.nbytes

    def close(self) -> None:
        self.writer.close()
        if not self.target.is_local:
            self.target.fs.put_file(self.local, self.target.path(self.name))
            os.remove(self.local)


@contextmanager
def _destination(dest: str) -> Iterator[Folder]:
    """The folder to write the dataset in: for a local DEST, a sibling that replaces it whole when done (an earlier
    publish, or nothing: tpt.io.owned); for a URL, DEST itself, which must be empty, with what this publish wrote
    removed if it fails."""
    target = Folder(dest)
    if target.is_local:
        with replacing_folder(target.root, PUBLISH) as staging:
            yield Folder(staging)
        return
    if target.fs.exists(target.root) and target.fs.find(target.root):
        raise AnalysisError(f"{dest} is not empty; tpt publishes to a new or empty folder at a URL, and replaces nothing there")
    try:
        yield target
    except BaseException:
        target.remove(DATA, CARD)
        raise
