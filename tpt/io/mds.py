"""MDS shards and their indexes, written without importing the `streaming` package.

Importing `streaming` imports torch and transformers: seconds in every worker
process of a run, which only writes shards. This module writes MDS (version 2)
exactly as streaming's `MDSWriter` does, and merges part indexes as its
`merge_index` does (tests/test_mds.py compares the bytes with theirs); the
shards are read with streaming's `StreamingDataset`, as always.

    shard.NNNNN.mds[.<compression>]   uint32 samples, uint32 offsets[samples + 1], JSON config, samples
    sample                            uint32 size of each variable-size column, then every column's bytes
    index.json                        {"version": 2, "shards": [config + samples + raw_data / zip_data]}

Columns are stored in sorted name order; every number is little-endian.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
from collections.abc import Callable
from typing import Any

ENCODERS: dict[str, tuple[int | None, Callable[[Any], bytes]]] = {  # encoding -> (fixed size or None, encode)
    "str": (None, lambda value: value.encode("utf-8")),
    "int32": (4, lambda value: struct.pack("<i", value)),
    "uint8": (1, lambda value: struct.pack("<B", value)),
    "float32": (4, lambda value: struct.pack("<f", value)),
}


def _compressor(compression: str) -> tuple[str, Callable[[bytes], bytes]]:
    """The file extension and compress function of `compression` ("zstd", "zstd:9", "gz", "br", "snappy")."""
    family, _, level = compression.partition(":")
    if family == "zstd":
        import zstd

        return "zstd", lambda data: zstd.compress(data, int(level or 3))
    if family == "gz":
        return "gz", lambda data: gzip.compress(data, int(level or 9))
    if family == "br":
        import brotli

        return "br", lambda data: brotli.compress(data, quality=int(level or 11))
    if family == "snappy":
        import snappy

        return "snappy", snappy.compress
    raise ValueError(f"unknown MDS compression {compression!r}; expected zstd[:level], gz[:level], br[:level] or snappy")


class ShardWriter:
    """Samples (dicts of `columns`) into MDS shards of at most `size_limit` bytes each, in the local folder `out`."""

    def __init__(self, out: str, columns: dict[str, str], compression: str | None = None, size_limit: int | None = 1 << 26):
        self.out, self.compression, self.size_limit = out, compression, size_limit
        self.names = sorted(columns)
        self.encoders = [ENCODERS[columns[name]] for name in self.names]
        self.config = {"version": 2, "format": "mds", "compression": compression, "hashes": [], "size_limit": size_limit,
                       "column_names": self.names, "column_encodings": [columns[name] for name in self.names],
                       "column_sizes": [size for size, _ in self.encoders]}
        self.config_data = json.dumps(self.config, sort_keys=True).encode("utf-8")
        self.extension, self.compress = _compressor(compression) if compression else (None, None)
        self.shards: list[dict[str, Any]] = []
        self.samples: list[bytes] = []
        self.size = self._empty_size = 4 + 4 + len(self.config_data)  # samples, the first offset, the config
        os.makedirs(out, exist_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.finish()

    def write(self, sample: dict[str, Any]) -> None:
        sizes, columns = [], []
        for name, (size, encode) in zip(self.names, self.encoders):
            data = encode(sample[name])
            if size is None:
                sizes.append(len(data))
            columns.append(data)
        encoded = struct.pack(f"<{len(sizes)}I", *sizes) + b"".join(columns)
        if self.size_limit and self.size_limit < self.size + len(encoded) + 4:  # 4: the sample's offset
            self._flush()
        self.samples.append(encoded)
        self.size += len(encoded) + 4

    def finish(self) -> None:
        if self.samples:
            self._flush()
        with open(os.path.join(self.out, "index.json"), "w") as index:
            json.dump({"version": 2, "shards": self.shards}, index, sort_keys=True)

    def _flush(self) -> None:
        count = len(self.samples)
        offsets, position = [], 4 + 4 * (count + 1) + len(self.config_data)
        for sample in [b"", *self.samples]:
            position += len(sample)
            offsets.append(position)
        raw = struct.pack(f"<I{count + 1}I", count, *offsets) + self.config_data + b"".join(self.samples)
        basename = f"shard.{len(self.shards):05d}.mds"
        shard = {"samples": count, "raw_data": {"basename": basename, "bytes": len(raw), "hashes": {}}, "zip_data": None,
                 **self.config}
        data = raw
        if self.compress is not None:
            data = self.compress(raw)
            basename = f"{basename}.{self.extension}"
            shard["zip_data"] = {"basename": basename, "bytes": len(data), "hashes": {}}
        with open(os.path.join(self.out, basename), "wb") as stream:
            stream.write(data)
        self.shards.append(shard)
        self.samples, self.size = [], self._empty_size


def merge_indexes(parts: list[tuple[str, bytes]]) -> str:
    """One index.json for the shards of several parts, each named by its folder: [(folder name, index.json)]."""
    shards = []
    for folder, data in parts:
        for shard in json.loads(data)["shards"]:
            for key in ("raw_data", "zip_data"):
                if shard.get(key):
                    shard[key]["basename"] = f"{folder}/{shard[key]['basename']}"
            shards.append(shard)
    return json.dumps({"version": 2, "shards": shards})
