"""MDS shards and their indexes, written without importing the `streaming` package.

Importing `streaming` imports torch and transformers: seconds in every worker
process of a run, which only writes shards. This module writes MDS (version 2)
exactly as streaming's `MDSWriter` does, and merges part indexes as its
`merge_index` does (tests/test_mds.py compares the bytes with theirs). Training
reads the shards with streaming's `StreamingDataset`, as always; `read_shards`
reads them here too, column by column, for the commands that must start at once
(`tpt show`) or read every sample (`tpt publish`).

    shard.NNNNN.mds[.<compression>]   uint32 samples, uint32 offsets[samples + 1], JSON config, samples
    sample                            uint32 size of each variable-size column, then every column's bytes
    index.json                        {"version": 2, "shards": [config + samples + raw_data / zip_data]}

Columns are stored in sorted name order; every number is little-endian.
"""

from __future__ import annotations

import gzip
import json
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from tpt.io.storage import Folder

ENCODERS: dict[str, tuple[int | None, Callable[[Any], bytes]]] = {  # encoding -> (fixed size or None, encode)
    "str": (None, lambda value: value.encode("utf-8")),
    "int32": (4, lambda value: struct.pack("<i", value)),
    "uint8": (1, lambda value: struct.pack("<B", value)),
    "float32": (4, lambda value: struct.pack("<f", value)),
}


def _codec(compression: str) -> tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    """The file extension, compress and decompress functions of `compression` ("zstd", "zstd:9", "gz", "br", "snappy")."""
    family, _, level = compression.partition(":")
    if family == "zstd":
        import zstd

        return "zstd", lambda data: zstd.compress(data, int(level or 3)), zstd.decompress
    if family == "gz":
        return "gz", lambda data: gzip.compress(data, int(level or 9)), gzip.decompress
    if family == "br":
        import brotli

        return "br", lambda data: brotli.compress(data, quality=int(level or 11)), brotli.decompress
    if family == "snappy":
        import snappy

        return "snappy", snappy.compress, snappy.decompress
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
        self.extension, self.compress = _codec(compression)[:2] if compression else (None, None)
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


ARROW_TYPES = {"str": pa.string(), "int32": pa.int32(), "uint8": pa.uint8(), "float32": pa.float32()}
_NUMPY_TYPES = {"int32": "<i4", "uint8": "u1", "float32": "<f4"}


def index_shards(folder: Folder) -> list[tuple[Folder, dict[str, Any]]]:
    """The shards of the MDS dataset in `folder` (which holds its index.json), in index order, each with its folder."""
    return [(folder, shard) for shard in json.loads(folder.read_text("index.json"))["shards"]]


def read_shards(shards: list[tuple[Folder, dict[str, Any]]], prefetch: int = 2,
                convert: Callable[[pa.Table], Any] | None = None) -> Iterator[Any]:
    """Each of `shards` (from `index_shards`, in any order) as a table of its columns, or what `convert` makes of
    it. A thread of its own reads, decodes and converts the next `prefetch` shards meanwhile (I/O, decompression
    and Arrow's copies release the GIL); a reader that stops early leaves it to stop, never to block the exit."""
    def load(shard: tuple[Folder, dict[str, Any]]) -> Any:
        table = read_shard(*shard)
        return convert(table) if convert else table

    ready: queue.Queue = queue.Queue(max(prefetch, 1))
    stop = threading.Event()

    def work() -> None:
        for shard in shards:
            try:
                item = (load(shard), None)
            except Exception as error:  # handed to the reader, which raises it
                item = (None, error)
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set() or item[1] is not None:
                return

    threading.Thread(target=work, name="tpt-read-shards", daemon=True).start()
    try:
        for _ in shards:
            table, error = ready.get()
            if error is not None:
                raise error
            yield table
    finally:
        stop.set()


def read_shard(folder: Folder, shard: dict[str, Any]) -> pa.Table:
    """One shard of an index (local or at any fsspec URL), decompressed and decoded."""
    stored = shard["zip_data"] or shard["raw_data"]
    data = folder.fs.cat_file(folder.path(stored["basename"]))
    if shard["zip_data"]:
        data = _codec(shard["compression"])[2](data)
    return decode_shard(data)


def decode_shard(raw: bytes) -> pa.Table:
    """Every sample of one uncompressed MDS shard, column by column (tpt's encodings: str, int32, uint8, float32).

    No Python runs per sample: the position of every column of every sample comes from numpy, and each string
    column is cut out of the shard by Arrow (`byte_slices`)."""
    count = int.from_bytes(raw[:4], "little")
    offsets = np.frombuffer(raw, "<u4", count + 1, 4).astype(np.int64)
    config = json.loads(raw[4 + 4 * (count + 1):int(offsets[0])])
    names, encodings, sizes = config["column_names"], config["column_encodings"], config["column_sizes"]
    unknown = sorted({e for e in encodings if e not in ARROW_TYPES})
    if unknown:
        raise ValueError(f"MDS column encodings {unknown} are not tpt's; tpt reads {', '.join(ARROW_TYPES)}")
    data = np.frombuffer(raw, np.uint8)
    variable = [j for j, size in enumerate(sizes) if size is None]
    lengths = np.tile(np.array([size or 0 for size in sizes], np.int64), (count, 1))
    if variable:  # each sample starts with the byte size of each of its variable-size columns
        header = offsets[:-1, None] + 4 * np.arange(len(variable))
        lengths[:, variable] = _gather(data, header, 4).view("<u4").reshape(count, len(variable))
    starts = offsets[:-1, None] + 4 * len(variable) + np.cumsum(lengths, axis=1) - lengths
    columns = {}
    for j, (name, encoding) in enumerate(zip(names, encodings)):
        if encoding == "str":
            columns[name] = byte_slices(raw, starts[:, j], starts[:, j] + lengths[:, j]).cast(pa.string())
        else:
            values = _gather(data, starts[:, j], sizes[j]).view(_NUMPY_TYPES[encoding]).reshape(count)
            columns[name] = pa.array(values, ARROW_TYPES[encoding])
    return pa.table(columns) if count else pa.schema([(n, ARROW_TYPES[e]) for n, e in zip(names, encodings)]).empty_table()


def byte_slices(data: Any, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """The bytes data[starts[i]:ends[i]] of each i, copied out into one binary array (see `byte_views`)."""
    if not len(starts):
        return pa.array([], pa.large_binary())
    return byte_views(data, starts, ends).take(pa.array(np.arange(0, 2 * len(starts), 2)))


def byte_views(data: Any, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """`data` as a binary array, without a copy, whose element 2i is data[starts[i]:ends[i]] (the odd ones are the
    gaps between), for slices in order that do not overlap: offsets s0, e0, s1, e1, ... over the buffer."""
    bounds = np.empty(2 * len(starts), np.int64)
    bounds[0::2], bounds[1::2] = starts, ends
    return pa.Array.from_buffers(pa.large_binary(), max(len(bounds) - 1, 0), [None, pa.py_buffer(bounds), pa.py_buffer(data)])


def _gather(data: np.ndarray, positions: np.ndarray, size: int) -> np.ndarray:
    """The `size` bytes at each of `positions`, as a contiguous uint8 array (positions' shape + (size,))."""
    return np.ascontiguousarray(data[positions[..., None] + np.arange(size)])
