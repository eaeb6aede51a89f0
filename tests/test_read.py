"""The reader: JSONL (plain, gzip, zstd) and Parquet; every bad row is a reject with its reason."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.conftest import write_jsonl
from tpt.config import SourceConfig
from tpt.io.read import LINES_PER_CREDIT, list_files, read_file
from tpt.schema import Record, Reject, content_id

ROWS = [{"id": "a", "text": "alpha"}, {"id": 7, "text": "beta"}, {"text": "gamma"}]


def read_all(source: SourceConfig, max_doc_bytes: int = 2**20) -> list[Record | Reject]:
    return [item for path in list_files(source) for item in read_file(source, path, max_doc_bytes)]


def test_jsonl_ids_are_given_or_a_content_hash(tmp_path):
    source = SourceConfig(name="s", path=str(write_jsonl(tmp_path / "s.jsonl", ROWS)))
    records = read_all(source)
    assert [r.id for r in records] == ["a", "7", content_id("s", "gamma")]
    assert [r.text for r in records] == ["alpha", "beta", "gamma"]
    assert all(r.source == "s" for r in records)


def test_content_id_is_stable_and_depends_on_source_and_text():
    assert content_id("s", "gamma") == content_id("s", "gamma")
    assert len({content_id("s", "gamma"), content_id("t", "gamma"), content_id("s", "gammas")}) == 3


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_jsonl(tmp_path, suffix):
    data = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    compressed = gzip.compress(data) if suffix.endswith("gz") else zstandard.ZstdCompressor().compress(data)
    (tmp_path / f"s{suffix}").write_bytes(compressed)
    records = read_all(SourceConfig(name="s", path=str(tmp_path / f"s{suffix}")))
    assert [r.text for r in records] == ["alpha", "beta", "gamma"]


def test_parquet_with_custom_fields_and_glob(tmp_path):
    for n in range(2):
        table = pa.table({"doc": [f"text {n}-{i}" for i in range(3)], "key": [f"{n}-{i}" for i in range(3)], "other": [1, 2, 3]})
        pq.write_table(table, tmp_path / f"part{n}.parquet")
    source = SourceConfig(name="p", path=str(tmp_path / "*.parquet"), text_field="doc", id_field="key")
    records = read_all(source)
    assert [r.id for r in records] == ["0-0", "0-1", "0-2", "1-0", "1-1", "1-2"]
    assert records[4].text == "text 1-1"


def test_fsspec_url(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", ROWS)
    assert [r.id for r in read_all(SourceConfig(name="s", path=f"file://{path}"))][:2] == ["a", "7"]


BAD_ROWS = {
    "malformed_json": '{"id": "m", "text": "unterminated',
    "missing_text": json.dumps({"id": "n", "body": "no text field"}),
    "empty_text": json.dumps({"id": "e", "text": "  \n\t "}),
    "nul_bytes": json.dumps({"id": "z", "text": "nul\u0000inside"}),
    "invalid_utf8": json.dumps({"id": "s", "text": "lone \ud800 surrogate"}),
}


@pytest.mark.parametrize("reason", sorted(BAD_ROWS))
def test_bad_rows_become_rejects_and_the_rest_is_kept(tmp_path, reason):
    path = write_jsonl(tmp_path / "s.jsonl", [ROWS[0], BAD_ROWS[reason], ROWS[1]])
    items = read_all(SourceConfig(name="s", path=str(path)))
    assert [i.id for i in items if isinstance(i, Record)] == ["a", "7"]
    (reject,) = [i for i in items if isinstance(i, Reject)]
    assert (reject.reason, reject.stage, reject.source, reject.location) == (reason, "read", "s", f"{path}:2")
    assert reject.detail and reject.excerpt


def test_invalid_utf8_bytes(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n')
    items = read_all(SourceConfig(name="s", path=str(path)))
    assert [(type(i).__name__, getattr(i, "reason", None)) for i in items] == [("Record", None), ("Reject", "invalid_utf8")]


def test_a_document_over_max_doc_bytes_is_set_aside_before_parsing(tmp_path):
    huge = "word " * (10 * 2**20)  # 50 MB
    path = write_jsonl(tmp_path / "s.jsonl", [ROWS[0], {"id": "huge", "text": huge}])
    items = read_all(SourceConfig(name="s", path=str(path)), max_doc_bytes=8 * 2**20)
    assert isinstance(items[0], Record)
    assert items[1].reason == "too_large" and "52,428,8" in items[1].detail and len(items[1].excerpt) <= 200


def test_non_string_text_and_non_object_rows(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [json.dumps({"text": 12}), "[1, 2]"])
    assert [i.reason for i in read_all(SourceConfig(name="s", path=str(path)))] == ["missing_text", "malformed_json"]


def test_missing_input_file_is_an_error_naming_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"source 'gone': no files match .*missing\*.jsonl"):
        list_files(SourceConfig(name="gone", path=str(tmp_path / "missing*.jsonl")))


def test_unknown_extension_needs_a_format(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match="set `format: jsonl|parquet`"):
        read_all(SourceConfig(name="s", path=str(path)))


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet"])
def test_bytes_read_are_reported_as_reading_goes_and_add_up_to_the_file(tmp_path, suffix):
    rows = [{"id": str(i), "text": f"document {i} " * (i % 50 + 1)} for i in range(3 * LINES_PER_CREDIT)]
    path = tmp_path / f"s{suffix}"
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    if suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=1000)
    else:
        path.write_bytes({".jsonl": bytes, ".jsonl.gz": gzip.compress, ".jsonl.zst": zstandard.compress}[suffix](data))
    credits, seen = [], []
    source = SourceConfig(name="s", path=str(path))
    for record in read_file(source, str(path), 2**20, on_bytes=lambda n: credits.append((n, len(seen)))):
        seen.append(record.id)
    assert len(seen) == len(rows) and sum(n for n, _ in credits) == path.stat().st_size
    assert credits[0][1] < len(rows)  # the first bytes are reported before the last row is read


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst", ".parquet"])
def test_a_damaged_file_keeps_what_it_could_read_and_sets_the_rest_aside(tmp_path, suffix):
    """A file cut short (a copy interrupted) or corrupted: its readable rows are kept, and one reject says where
    and why reading stopped; nothing is silently dropped and the run goes on."""
    rows = [{"id": f"r{i}", "text": f"row number {i} " * 20} for i in range(2000)]
    path = tmp_path / f"s{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]}), path, row_group_size=500)
    else:
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
        path.write_bytes(gzip.compress(data) if suffix.endswith("gz") else zstandard.ZstdCompressor().compress(data))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2] + (b"\0" * 64 if suffix == ".parquet" else b"") + whole[-8:] * (suffix == ".parquet"))
    items = read_all(SourceConfig(name="s", path=str(path)))
    records, rejects = [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]
    # a cut zstd stream simply ends: its last, partial line is what is set aside
    reason = "malformed_json" if suffix == ".jsonl.zst" else "unreadable_file"
    assert len(rejects) == 1 and rejects[0].reason == reason
    assert rejects[0].location.startswith(str(path))
    assert [r.id for r in records] == [f"r{i}" for i in range(len(records))] and len(records) < 2000
    assert records or suffix == ".parquet"  # a Parquet file's footer says where its rows are: without it, none


def test_a_row_too_deep_or_with_an_over_long_number_is_a_reject_and_the_rest_is_read(tmp_path):
    """Rows that break the JSON decoder itself (recursion, Python's 4,300-digit limit) are rejects with file:line."""
    deep = '{"id": "deep", "text": "x", "n": ' + "[" * 100_000 + "]" * 100_000 + "}"
    long_id = '{"id": ' + "9" * 5000 + ', "text": "a long id"}'
    path = write_jsonl(tmp_path / "s.jsonl", [ROWS[0], deep, long_id, ROWS[1]])
    items = read_all(SourceConfig(name="s", path=str(path)))
    assert [i.id for i in items if isinstance(i, Record)] == ["a", "7"]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert [(r.reason, r.location) for r in rejects] == [("malformed_json", f"{path}:2"), ("malformed_json", f"{path}:3")]
    assert "RecursionError" in rejects[0].detail and "digits" in rejects[1].detail


def test_a_utf8_bom_is_not_part_of_the_first_row(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in ROWS).encode())
    assert [i.id for i in read_all(SourceConfig(name="s", path=str(path)))] == ["a", "7", content_id("s", "gamma")]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_a_last_row_without_a_newline_is_read(tmp_path, suffix):
    data = "\n".join(json.dumps(r) for r in ROWS).encode()
    path = tmp_path / f"s{suffix}"
    path.write_bytes({".jsonl": bytes, ".jsonl.gz": gzip.compress, ".jsonl.zst": zstandard.compress}[suffix](data))
    items = read_all(SourceConfig(name="s", path=str(path)))
    assert [i.text for i in items] == ["alpha", "beta", "gamma"] and all(isinstance(i, Record) for i in items)


def damaged_parquet(path, rows: int, groups: int) -> None:
    """A snappy Parquet file with 200 bytes overwritten in the middle: a data page of a middle row group is corrupt."""
    table = pa.table({"id": [f"r{i}" for i in range(rows)], "text": [f"row number {i} " * 20 for i in range(rows)]})
    pq.write_table(table, path, row_group_size=rows // groups, compression="snappy")
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 200] = b"\x07" * 200
    path.write_bytes(bytes(data))


def test_a_corrupt_parquet_page_sets_its_row_group_aside_and_the_other_row_groups_are_read(tmp_path):
    path = tmp_path / "s.parquet"
    damaged_parquet(path, rows=4000, groups=4)
    items = read_all(SourceConfig(name="s", path=str(path)))
    records, rejects = [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]
    (reject,) = rejects
    assert reject.reason == "unreadable_file" and reject.location.startswith(f"{path}:row ")
    assert "rows 2001-3000" in reject.detail and "Corrupt snappy" in reject.detail
    assert [r.id for r in records] == [f"r{i}" for i in range(2000)] + [f"r{i}" for i in range(3000, 4000)]


def test_a_parquet_string_that_is_not_utf8_is_a_reject_of_its_row_alone(tmp_path):
    texts = pa.array([b"fine", b"caf\xe9", b"also fine"], pa.binary()).view(pa.string())  # written unchecked
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": texts}), tmp_path / "s.parquet")
    items = read_all(SourceConfig(name="s", path=str(tmp_path / "s.parquet")))
    assert [(i.id, i.text) for i in items if isinstance(i, Record)] == [("a", "fine"), ("c", "also fine")]
    (reject,) = [i for i in items if isinstance(i, Reject)]
    assert (reject.reason, reject.location) == ("invalid_utf8", f"{tmp_path / 's.parquet'}:row 2")


PEAK_RSS = """
import resource, sys
from tpt.config import SourceConfig
from tpt.io.read import read_file
path = sys.argv[1]
source = SourceConfig(name="s", path=path)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
items = list(read_file(source, path, 2**20))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print([(type(i).__name__, getattr(i, "reason", None)) for i in items])
print((after - before) // 1024)
"""


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_huge_line_is_set_aside_with_memory_bounded_by_max_doc_bytes(tmp_path, suffix):
    """A 256 MB line (2 MB gzipped) under max_doc_bytes=1 MiB: read past in bounded pieces, never held whole
    (peak resident memory measured in a process of its own)."""
    path = tmp_path / f"s{suffix}"
    with (gzip.open(path, "wb", compresslevel=1) if suffix.endswith("gz") else open(path, "wb")) as stream:
        stream.write(b'{"id": "ok", "text": "before"}\n{"id": "huge", "text": "')
        for _ in range(256):
            stream.write(b"a" * 2**20)
        stream.write(b'"}\n{"id": "ok2", "text": "after"}\n')
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, str(path)], capture_output=True, text=True, check=True)
    kinds, grown_mb = result.stdout.splitlines()
    assert kinds == "[('Record', None), ('Reject', 'too_large'), ('Record', None)]"
    assert int(grown_mb) < 32, f"reading grew resident memory by {grown_mb} MB"
