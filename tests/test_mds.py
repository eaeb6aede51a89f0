"""tpt's MDS writer and index merge give the bytes of streaming's own, and StreamingDataset reads them back."""

from __future__ import annotations

import gzip
import os
import random
from pathlib import Path

import pytest
from streaming import MDSWriter, StreamingDataset
from streaming.base.util import merge_index

from tpt.io.mds import ShardWriter, merge_indexes
from tpt.schema import MDS_TYPES

COLUMNS = {name: MDS_TYPES[name] for name in ("id", "source", "text", "kept_tokens", "truncated", "domain_score")}


def samples(count: int) -> list[dict]:
    rng, words = random.Random(0), ["tide", "moon", "été", "潮汐", "🌊"]
    return [{"id": f"doc{i:03d}", "source": "web", "kept_tokens": rng.randrange(-5, 2**31 - 1), "truncated": i % 2,
             "domain_score": rng.random(), "text": " ".join(rng.choice(words) for _ in range(rng.randrange(0, 300)))}
            for i in range(count)]


def files(folder) -> dict[str, bytes]:
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("compression", [None, "zstd", "zstd:9", "br", "snappy"])
def test_shards_and_index_equal_streaming_mds_writer_bytes(tmp_path, compression):
    rows = samples(60)
    with MDSWriter(out=str(tmp_path / "theirs"), columns=COLUMNS, compression=compression, size_limit=4000) as writer:
        for row in rows:
            writer.write(row)
    with ShardWriter(str(tmp_path / "ours"), COLUMNS, compression, size_limit=4000) as writer:
        for row in rows:
            writer.write(row)
    ours = files(tmp_path / "ours")
    assert len(ours) > 3  # several shards: the size limit was honoured the same way
    assert ours == files(tmp_path / "theirs")


def test_gzip_shards_hold_the_same_bytes_once_decompressed(tmp_path):
    """gzip stamps the time into its header, so only the decompressed shards can be compared."""
    rows = samples(20)
    with MDSWriter(out=str(tmp_path / "theirs"), columns=COLUMNS, compression="gz", size_limit=4000) as writer:
        for row in rows:
            writer.write(row)
    with ShardWriter(str(tmp_path / "ours"), COLUMNS, "gz", size_limit=4000) as writer:
        for row in rows:
            writer.write(row)
    ours, theirs = files(tmp_path / "ours"), files(tmp_path / "theirs")
    assert ours.keys() == theirs.keys()
    assert all(gzip.decompress(ours[name]) == gzip.decompress(theirs[name]) for name in ours if name.endswith(".gz"))


def test_merged_parts_equal_merge_index_and_read_back_whole(tmp_path):
    rows = samples(90)
    for part in range(3):
        with ShardWriter(str(tmp_path / "mds" / f"part-{part:05d}"), COLUMNS, "zstd", size_limit=6000) as writer:
            for row in rows[part::3]:
                writer.write(row)
    names = [str(tmp_path / "mds" / f"part-{part:05d}" / "index.json") for part in range(3)]
    merge_index(names, str(tmp_path / "theirs"), keep_local=True)
    ours = merge_indexes([(f"part-{part:05d}", Path(name).read_bytes()) for part, name in enumerate(names)])
    assert ours == (tmp_path / "theirs" / "index.json").read_text()
    (tmp_path / "mds" / "index.json").write_text(ours)
    dataset = StreamingDataset(local=str(tmp_path / "mds"), shuffle=False, batch_size=1)
    read = sorted((dict(sample) for sample in dataset), key=lambda s: s["id"])
    assert [s["id"] for s in read] == [r["id"] for r in rows]
    for got, row in zip(read, rows):
        assert (got["text"], int(got["kept_tokens"]), int(got["truncated"])) == (row["text"], row["kept_tokens"], row["truncated"])
        assert got["domain_score"] == pytest.approx(row["domain_score"], rel=1e-6)


@pytest.mark.parametrize("compression", [None, "zstd", "gz", "br", "snappy"])
def test_read_shards_gives_what_streaming_dataset_reads(tmp_path, compression):
    """tpt's own reader (for `tpt show` and `tpt publish`) against streaming's, sample by sample, every column."""
    from tpt.io.mds import index_shards, read_shards
    from tpt.io.storage import Folder

    rows = samples(60) + [{"id": "empty", "source": "", "kept_tokens": -1, "truncated": 0, "domain_score": 0.0, "text": ""}]
    with ShardWriter(str(tmp_path), COLUMNS, compression, size_limit=4000) as writer:
        for row in rows:
            writer.write(row)
    tables = list(read_shards(index_shards(Folder(tmp_path))))
    assert len(tables) > 3
    ours = [row for table in tables for row in table.to_pylist()]
    theirs = [dict(sample) for sample in StreamingDataset(local=str(tmp_path), shuffle=False, batch_size=1)]
    assert [row["id"] for row in ours] == [row["id"] for row in theirs] == [row["id"] for row in rows]
    for got, want in zip(ours, theirs):
        assert got["text"] == want["text"] and got["source"] == want["source"]
        assert (got["kept_tokens"], got["truncated"]) == (int(want["kept_tokens"]), int(want["truncated"]))
        assert got["domain_score"] == float(want["domain_score"])  # the same float32, bit for bit
