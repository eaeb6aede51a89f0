"""Hostile input rows through a whole run, on both engines: more than a thousand generated rows of every kind the
reader must survive (JSONL plain, gzip and zstd; Parquet in three codecs; damaged files; a 1 GiB line), one
worker. The run finishes, every row is a sample or a reject with the reason it was built to get, nothing prints a
traceback, and the run's peak resident memory stays far below the longest line."""

from __future__ import annotations

import gzip
import json
import random
import string
import subprocess
import sys
import zlib
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

MAX_DOC_BYTES = 64 * 2**10
HUGE_LINE = 2**30  # bytes of text in one line, in a .jsonl.zst of a few kB
SEED = 22

class Corpus:
    """Files of hostile rows, and the outcome each row was built to get: "kept", or the reason it is rejected."""

    def __init__(self, folder, seed: int):
        self.folder, self.random = folder, random.Random(seed)
        self.expected: Counter = Counter()
        self.serial = 0

    def text(self, words: int = 12) -> str:
        """A fresh document of random words: no stage takes two of them for one (nor for near-duplicates)."""
        self.serial += 1
        return f"Document {self.serial}: " + " ".join(
            "".join(self.random.choices(string.ascii_lowercase, k=7)) for _ in range(words)) + "."

    def jsonl_rows(self, count: int) -> list[bytes]:
        """`count` lines, each built by a randomly chosen maker; every maker records its expected outcome."""
        makers = [getattr(self, name) for name in dir(self) if name.startswith("line_")]
        return [self.random.choice(makers)() for _ in range(count)]

    def kept(self, row: dict) -> bytes:
        self.expected["kept"] += 1
        return json.dumps(row).encode()

    def rejected(self, reason: str, line: bytes) -> bytes:
        self.expected[reason] += 1
        return line

    # rows a reader keeps, however odd
    def line_plain(self):
        return self.kept({"id": f"p{self.serial}", "text": self.text()})

    def line_odd_but_valid(self):
        text = self.random.choice(["\u2028 line separator", " \ufeff zero-width no-break", " \u202e right-to-left",
                                   " emoji \U0001f30a", " tab\tand\rreturn", " 🐍" * 50])
        row = {"id": self.random.choice([f"o{self.serial}", None, "", 10**30 + self.serial, [self.serial], {"k": self.serial}]),
               "text": self.text() + text, "extra": {"nested": [1, 2, {"deep": None}]}}
        return self.kept(row)

    def line_duplicate_keys(self):
        self.expected["kept"] += 1
        return b'{"id": "dk%d", "text": "first", "text": %s}' % (self.serial, json.dumps(self.text()).encode())

    def line_crlf(self):
        return self.kept({"id": f"cr{self.serial}", "text": self.text()}) + b"\r"

    def line_big_but_fits(self):
        return self.kept({"id": f"b{self.serial}", "text": self.text() + " x" * (MAX_DOC_BYTES // 4)})

    # rows a reader sets aside
    def line_malformed(self):
        line = self.random.choice([b'{"id": "m", "text": "unterminated', b"{'single': 'quotes'}", b"{,}", b"\x1b[31mred",
                                   b'{"id": 1} {"id": 2}', b'{"a": 1}\r{"b": 2}', b"nul\x00byte", b"{" * 3000])
        return self.rejected("malformed_json", line)

    def line_not_an_object(self):
        return self.rejected("malformed_json", self.random.choice([b"[1, 2]", b"42", b'"text"', b"null", b"true", b"-1e999"]))

    def line_too_deep(self):
        depth = self.random.choice([1000, 10_000, 30_000])
        return self.rejected("malformed_json", b'{"id": "d", "text": "x", "n": ' + b"[" * depth + b"]" * depth + b"}")

    def line_long_number(self):
        return self.rejected("malformed_json", b'{"id": ' + b"7" * self.random.choice([4301, 5000, 20000]) + b', "text": "t"}')

    def line_missing_text(self):
        row = self.random.choice([{"id": "n"}, {"text": None}, {"text": 12}, {"text": ["a"]}, {"text": {"a": 1}}, {"text": True}])
        return self.rejected("missing_text", json.dumps(row).encode())

    def line_empty_text(self):
        return self.rejected("empty_text", json.dumps({"text": self.random.choice(["", " ", "\n\t ", "\u3000"])}).encode())

    def line_nul(self):
        return self.rejected("nul_bytes", json.dumps({"text": self.text() + "\u0000"}).encode())

    def line_lone_surrogate(self):
        return self.rejected("invalid_utf8", b'{"text": "%s \\ud800 %s"}' % (b"lone", self.random.choice([b"a", b"\\udfff"])))

    def line_invalid_utf8(self):
        return self.rejected("invalid_utf8", b'{"text": "caf\xe9 ' + bytes([self.random.randrange(0x80, 0x100)]) + b'"}')

    def line_too_large(self):
        return self.rejected("too_large", json.dumps({"text": "y" * (MAX_DOC_BYTES + self.random.randrange(1, 10_000))}).encode())

    # files
    def write_jsonl(self, name: str, lines: list[bytes], compress=bytes) -> None:
        data = b"\n".join(lines)  # the last row without a newline
        (self.folder / name).write_bytes(compress(data))

    def write_parquet(self, name: str, rows: int, codec: str) -> None:
        texts, ids = [], []
        for n in range(rows):
            kind = self.random.choice(["kept", "kept", "kept", "missing_text", "empty_text", "nul_bytes", "invalid_utf8", "too_large"])
            self.expected[kind] += 1
            ids.append(f"{name}-{n}")
            texts.append({"kept": self.text().encode(), "missing_text": None, "empty_text": b"  ", "nul_bytes": b"a\x00b",
                          "invalid_utf8": b"caf\xe9", "too_large": b"z" * (MAX_DOC_BYTES + 1)}[kind])
        text = pa.array(texts, pa.binary()).view(pa.string())  # written unchecked, invalid UTF-8 included
        pq.write_table(pa.table({"id": ids, "text": text}), self.folder / name, compression=codec, row_group_size=37)

    def write_damaged_parquet(self, name: str, rows: int) -> None:
        """Snappy, row groups of 100; a data page of the middle row group overwritten: its rows are one reject."""
        table = pa.table({"id": [f"{name}-{n}" for n in range(rows)], "text": [self.text(40) for _ in range(rows)]})
        pq.write_table(table, self.folder / name, row_group_size=100, compression="snappy")
        data = bytearray((self.folder / name).read_bytes())
        middle = len(data) // 2
        data[middle:middle + 200] = b"\x07" * 200
        (self.folder / name).write_bytes(bytes(data))
        self.expected["kept"] += rows - 100
        self.expected["unreadable_file"] += 1

    def write_cut_gzip(self, name: str, rows: int) -> None:
        """A .jsonl.gz cut in half: the complete lines before the cut are kept, the rest of the file is one reject."""
        lines = [json.dumps({"id": f"{name}-{n}", "text": self.text()}).encode() for n in range(rows)]
        whole = gzip.compress(b"\n".join(lines) + b"\n")
        (self.folder / name).write_bytes(whole[: len(whole) // 2])
        self.expected["kept"] += zlib.decompressobj(wbits=31).decompress(whole[: len(whole) // 2]).count(b"\n")
        self.expected["unreadable_file"] += 1

    def write_huge_line(self, name: str) -> None:
        """A valid document of HUGE_LINE bytes between two small ones, zstd-compressed to a few kB."""
        with open(self.folder / name, "wb") as raw, zstandard.ZstdCompressor(level=1).stream_writer(raw) as stream:
            stream.write(json.dumps({"id": "before-huge", "text": self.text()}).encode() + b'\n{"id": "huge", "text": "')
            for _ in range(HUGE_LINE // 2**24):
                stream.write(b"a" * 2**24)
            stream.write(b'"}\n' + json.dumps({"id": "after-huge", "text": self.text()}).encode() + b"\n")
        self.expected["kept"] += 2
        self.expected["too_large"] += 1


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    corpus = Corpus(folder, SEED)
    corpus.write_jsonl("plain.jsonl", corpus.jsonl_rows(500))
    corpus.write_jsonl("bom.jsonl", [b"\xef\xbb\xbf" + corpus.line_plain(), *corpus.jsonl_rows(100)])
    corpus.write_jsonl("rows.jsonl.gz", corpus.jsonl_rows(250), gzip.compress)
    corpus.write_jsonl("rows.jsonl.zst", corpus.jsonl_rows(250), zstandard.compress)
    for codec in ("snappy", "zstd", "gzip"):
        corpus.write_parquet(f"rows-{codec}.parquet", 120, codec)
    corpus.write_damaged_parquet("damaged.parquet", 300)
    corpus.write_cut_gzip("cut.jsonl.gz", 400)
    corpus.write_huge_line("huge.jsonl.zst")
    duplicates = [json.dumps({"id": "twice", "text": corpus.text()}).encode() for _ in range(3)]
    corpus.write_jsonl("duplicates.jsonl", duplicates)
    corpus.expected["kept"] += 1
    corpus.expected["duplicate_id"] += 2
    (folder / "config.yaml").write_text(
        "sources:\n  - {name: jsonl, path: '*.jsonl*'}\n  - {name: parquet, path: '*.parquet'}\n"
        f"truncate: {{max_doc_tokens: 64, max_doc_bytes: {MAX_DOC_BYTES}}}\noutput: {{parts: 2}}\n")
    return corpus


PEAK = "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); " \
       "print('peak_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"


@pytest.mark.parametrize("engine", ["beam", "datatrove"])
def test_a_thousand_hostile_rows_end_as_samples_or_rejects_with_their_reasons(corpus, engine):
    expected = corpus.expected
    assert sum(expected.values()) >= 1000
    out = corpus.folder / f"out-{engine}"
    run = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "tpt.cli", "run", str(corpus.folder / "config.yaml"),
                          "--output", str(out), "--engine", engine, "--workers", "1"], capture_output=True, text=True)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    summary = json.loads((out / "summary.json").read_text())
    totals = summary["totals"]
    reasons = Counter({reason: n for counts in summary["stages"].values() for reason, n in counts["rejected"].items()})
    assert totals["read"] == totals["written"] + totals["rejected"] == sum(expected.values())
    assert (totals["written"], reasons) == (expected["kept"], expected - Counter({"kept": expected["kept"]}))
    peak = int(output.split("peak_kb ")[1].split()[0]) * 1024
    assert peak < HUGE_LINE // 2, f"the run's peak resident memory was {peak / 2**20:.0f} MiB"
