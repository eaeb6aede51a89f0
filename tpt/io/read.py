"""Read a source's files into records; set aside every row that cannot become one.

JSONL (plain, .gz, .zst) and Parquet, on local paths or any fsspec URL. Each
bad row becomes a `Reject` with its file:line, never an exception that stops
the run and never a silent skip. A JSONL line is never held longer than
`max_doc_bytes`, whatever its length or compression: a longer one is read past
in pieces and set aside. A Parquet row group that cannot be decoded is set
aside whole, and reading goes on with the next.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from tpt.config import SourceConfig
from tpt.schema import Record, Reject, content_id

STAGE = "read"
EXCERPT = 200
LINES_PER_CREDIT = 4096  # how often a JSONL reader reports the bytes it has read
PASS_OVER = 2**20  # the piece an over-long line is read past in
PARQUET_BATCH_ROWS = 1024  # at most, and fewer when rows are large: a batch holds about max_doc_bytes of text
# what a damaged file raises part way: a cut or corrupt .gz / .zst stream, a broken Parquet file
CORRUPT = (EOFError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError, pa.ArrowInvalid)
# what decoding one JSON line can raise besides JSONDecodeError: nesting too deep, an integer over Python's digit limit
UNDECODABLE = (ValueError, RecursionError)


def list_files(source: SourceConfig) -> list[str]:
    """The files a source's path or glob names, sorted; an error if there are none."""
    fs, _ = fsspec.core.url_to_fs(source.path)
    paths = sorted(f.full_name if "://" in source.path else f.path for f in fsspec.open_files(source.path, mode="rb"))
    paths = [p for p in paths if fs.isfile(p)]
    if not paths:
        raise FileNotFoundError(f"source {source.name!r}: no files match {source.path}")
    return paths


def list_inputs(sources: list[SourceConfig]) -> list[tuple[str, str]]:
    """(source name, file) for every input file of a run, in config order: the work both engines spread.

    Each file's format is told here, so a file no reader can read stops the run before anything is written.
    """
    files = [(source, path) for source in sources for path in list_files(source)]
    for source, path in files:
        file_format(source, path)
    return [(source.name, path) for source, path in files]


def file_size(path: str) -> int:
    fs, path = fsspec.core.url_to_fs(path)
    return fs.size(path)


def input_bytes(files: list[tuple[str, str]]) -> int:
    """The total size of a run's input files: one fsspec call per source, concurrent on object stores."""
    by_source: dict[str, list[str]] = {}
    for name, path in files:
        by_source.setdefault(name, []).append(path)
    return sum(sum(fsspec.core.url_to_fs(paths[0])[0].sizes(paths)) for paths in by_source.values())


def file_format(source: SourceConfig, path: str) -> str:
    if source.format:
        return source.format
    name = path.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if any(name.endswith(ext) for ext in (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json", ".json.gz", ".json.zst")):
        return "jsonl"
    raise ValueError(f"source {source.name!r}: cannot tell the format of {path}; set `format: jsonl|parquet`")


def read_file(source: SourceConfig, path: str, max_doc_bytes: int,
              on_bytes: Callable[[int], None] | None = None) -> Iterator[Record | Reject]:
    """Every row of one file as a `Record`, or a `Reject` saying why it is not one.

    `on_bytes` is told, as reading goes, how many more bytes of the file (as stored,
    compressed or not) are read; by the end they add up to the file's size.
    """
    credit = _Credit(file_size(path) if on_bytes else 0, on_bytes)
    parquet = file_format(source, path) == "parquet"
    rows = _parquet_rows(source, path, max_doc_bytes, credit) if parquet else _jsonl_rows(source, path, max_doc_bytes, credit)
    location = f"{path}:start"
    try:
        for location, row in rows:
            yield row if isinstance(row, Reject) else _to_record(source, location, row, max_doc_bytes)
    except CORRUPT as error:  # the rows before it are read; the rest of the file cannot be
        yield _reject(source, location, "unreadable_file", f"the file cannot be read past here: {type(error).__name__}: {error}", "")
    credit.to(credit.size)


class _Credit:
    """Reports a file's bytes as they are read."""

    def __init__(self, size: int, on_bytes: Callable[[int], None] | None):
        self.size, self.on_bytes, self.done = size, on_bytes, 0

    def to(self, position: int) -> None:
        position = min(position, self.size)
        if self.on_bytes is not None and position > self.done:
            self.on_bytes(position - self.done)
            self.done = position


def _jsonl_rows(source: SourceConfig, path: str, max_doc_bytes: int, credit: _Credit) -> Iterator[tuple[str, dict | Reject]]:
    opened = fsspec.open(path, mode="rb", compression="infer")
    with opened as raw:
        stored = opened.fobjects[0]  # the file as stored, under any decompression: where reading is, in its bytes
        # a buffer reads lines of bounded length from any of them (zstandard's reader and fsspec's remote files cannot)
        stream = raw if isinstance(raw, gzip.GzipFile) else io.BufferedReader(raw)
        for number, line, size in _lines(stream, max_doc_bytes):
            if number % LINES_PER_CREDIT == 0:
                credit.to(stored.tell())
            location = f"{path}:{number}"
            if size > max_doc_bytes:
                yield location, _reject(source, location, "too_large",
                                        f"line of {size:,} bytes exceeds max_doc_bytes={max_doc_bytes:,}", line[:EXCERPT])
                continue
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as error:
                yield location, _reject(source, location, "invalid_utf8", str(error), line[:EXCERPT])
                continue
            try:
                row = json.loads(text)
            except UNDECODABLE as error:
                detail = str(error) if isinstance(error, json.JSONDecodeError) else f"{type(error).__name__}: {error}"
                yield location, _reject(source, location, "malformed_json", detail, line[:EXCERPT])
                continue
            if not isinstance(row, dict):
                yield location, _reject(source, location, "malformed_json",
                                        f"expected a JSON object, got {type(row).__name__}", line[:EXCERPT])
                continue
            yield location, row


def _lines(stream: io.BufferedIOBase, limit: int) -> Iterator[tuple[int, bytes, int]]:
    """(number, line, size in bytes) for every line. A line over `limit` bytes is read past in pieces and only
    its start is kept: no more than `limit` bytes of a line are ever held. A UTF-8 BOM opening the file is dropped."""
    number = 0
    while line := stream.readline(limit + 1):
        number += 1
        if number == 1 and line.startswith(codecs.BOM_UTF8):
            line = line[len(codecs.BOM_UTF8):]
        size = len(line)
        if size > limit:
            ended, line = line.endswith(b"\n"), line[:EXCERPT]
            while not ended and (piece := stream.readline(PASS_OVER)):
                size, ended = size + len(piece), piece.endswith(b"\n")
        yield number, line, size


def _parquet_rows(source: SourceConfig, path: str, max_doc_bytes: int, credit: _Credit) -> Iterator[tuple[str, dict | Reject]]:
    with fsspec.open(path, mode="rb") as stream:
        try:
            parquet = pq.ParquetFile(stream)
        except OSError as error:  # pyarrow's word for a footer it cannot parse
            raise pa.ArrowInvalid(f"not a readable Parquet file: {error}") from error
        names = parquet.schema_arrow.names
        columns = [c for c in (source.text_field, source.id_field) if c and c in names]
        leaves = [parquet.metadata.schema.column(i).path for i in range(parquet.metadata.num_columns)]
        text_column = leaves.index(source.text_field) if source.text_field in leaves else None
        total, number = max(parquet.metadata.num_rows, 1), 0
        for group in range(parquet.num_row_groups):
            metadata = parquet.metadata.row_group(group)
            end = number + metadata.num_rows
            text_bytes = metadata.column(text_column).total_uncompressed_size if text_column is not None else 0
            batch_rows = max(1, min(PARQUET_BATCH_ROWS, max_doc_bytes * metadata.num_rows // max(text_bytes, 1)))
            try:
                for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns or None):
                    for row in _batch_rows(source, batch, path, number):
                        number += 1
                        yield f"{path}:row {number}", row
                    credit.to(credit.size * number // total)  # bytes in proportion to rows
            except (OSError, pa.ArrowException) as error:  # a damaged page: the rest of its row group cannot be read
                if isinstance(error, (ConnectionError, TimeoutError)):  # the storage, not the file: the task fails and is retried
                    raise
                location = f"{path}:row {number + 1}"
                yield location, _reject(source, location, "unreadable_file",
                                        f"rows {number + 1}-{end} (row group {group}) cannot be read: {type(error).__name__}: "
                                        f"{error}; reading goes on at row {end + 1}", "")
                number = end


def _batch_rows(source: SourceConfig, batch: pa.RecordBatch, path: str, before: int) -> list[dict | Reject]:
    """A Parquet batch's rows, the `before`+1-th first; a row with a string that is not UTF-8 is a reject of its own."""
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        pass
    rows: list[dict | Reject] = []
    for index in range(batch.num_rows):
        try:
            rows.append(batch.slice(index, 1).to_pylist()[0])
        except UnicodeDecodeError as error:
            rows.append(_reject(source, f"{path}:row {before + index + 1}", "invalid_utf8", str(error), ""))
    return rows


def _to_record(source: SourceConfig, location: str, row: dict[str, Any], max_doc_bytes: int) -> Record | Reject:
    text = row.get(source.text_field)
    excerpt = json.dumps(row, ensure_ascii=False, default=str)[:EXCERPT]
    if text is None:
        return _reject(source, location, "missing_text", f"no field {source.text_field!r}; fields: {sorted(row)}", excerpt)
    if not isinstance(text, str):
        return _reject(source, location, "missing_text",
                       f"field {source.text_field!r} is {type(text).__name__}, expected a string", excerpt)
    if not text.strip():
        return _reject(source, location, "empty_text", f"field {source.text_field!r} is empty or whitespace", excerpt)
    if "\x00" in text:
        return _reject(source, location, "nul_bytes", f"field {source.text_field!r} contains NUL characters", excerpt)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as error:  # lone surrogates from JSON escapes such as "\ud800"
        return _reject(source, location, "invalid_utf8", f"field {source.text_field!r}: {error}", excerpt)
    if size > max_doc_bytes:
        return _reject(source, location, "too_large", f"text of {size:,} bytes exceeds max_doc_bytes={max_doc_bytes:,}", excerpt)
    given = row.get(source.id_field) if source.id_field else None
    doc_id = str(given) if given not in (None, "") else content_id(source.name, text)
    return Record(id=doc_id, source=source.name, text=text)


def _reject(source: SourceConfig, location: str, reason: str, detail: str, excerpt: bytes | str) -> Reject:
    if isinstance(excerpt, bytes):
        excerpt = excerpt.decode("utf-8", "replace")
    return Reject(source.name, STAGE, reason, detail, location=location, excerpt=excerpt)
