"""The samples [d; t] of a run, read from its MDS shards (tpt.io.mds, without importing `streaming`): for
`tpt show`, the report's excerpts and `tpt publish`.

The shards are read in their own order, shard by shard, so the first sample is at hand after one shard,
whatever the size of the run. A filter is SQL over the run's manifest (the view `samples` of `tpt stats`):
DuckDB finds the matching ids once, and each shard keeps its samples among them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tpt.analysis.runs import AnalysisError, Run, connect
from tpt.io.mds import byte_slices, byte_views, index_shards, read_shards
from tpt.io.output import OutputLayout, sample_columns
from tpt.io.storage import Folder

Shard = tuple[Folder, dict[str, Any]]


def source_shards(run: Run) -> dict[str, list[Shard]]:
    """Each source's shards (OUT/mds/<source>/index.json), sources in the config's order (as the summary lists
    them); none for a run without shards."""
    layout = OutputLayout(run.location)
    sources = {name.split("/")[1]: name.rsplit("/", 1)[0] for name in layout.glob(f"{layout.mds}/*/index.json")}
    order = list(run.summary.get("sources") or {})
    ranked = sorted(sources, key=lambda name: (order.index(name) if name in order else len(order), name))
    return {name: index_shards(Folder(layout.url_of(sources[name]))) for name in ranked}


def separator(run: Run) -> str:
    """What the run put between a document and its thinking (generate.separator, as its summary recorded it)."""
    generate = (run.summary.get("config") or {}).get("generate") or {}
    if "separator" in generate:
        return generate["separator"]
    from tpt.config import GenerateConfig  # a run from before summaries recorded the config: the default (pydantic: ~0.2 s)

    return GenerateConfig.model_fields["separator"].default


def with_documents(samples: pa.Table, separator: str) -> pa.Table:
    """`samples` (shard columns) with `document`: the text d of each [d; t], i.e. `text` less separator + thinking.

    A sample whose text does not end with the separator and its thinking is not one this run wrote with that
    separator: an AnalysisError names it.
    """
    text = samples.column("text").combine_chunks()
    if "thinking" not in samples.column_names:  # no think stage: the text is the document
        return samples.append_column("document", text)
    thinking = samples.column("thinking").combine_chunks()
    data, gap = text.buffers()[2], len(separator.encode())
    offsets = np.frombuffer(text.buffers()[1], np.int32, len(text) + 1, 4 * text.offset).astype(np.int64)
    starts, ends = offsets[:-1], offsets[1:]
    thought = ~np.asarray(pc.is_null(thinking).to_numpy(zero_copy_only=False), bool)
    cuts = np.where(thought, ends - gap - pc.fill_null(pc.binary_length(thinking), 0).to_numpy(zero_copy_only=False), ends)
    ok = cuts >= starts
    cuts = np.where(ok, cuts, starts)
    if gap and thought.any():
        marks = np.frombuffer(data, np.uint8)[np.minimum(cuts[thought, None] + np.arange(gap), len(data) - 1)]
        ok[thought] &= np.all(marks == np.frombuffer(separator.encode(), np.uint8), axis=1)
    if len(text):  # each text's tail against its thinking, element by element, neither copied
        thought_data = np.frombuffer(thinking.buffers()[2] or b"", np.uint8)
        thinking_offsets = np.frombuffer(thinking.buffers()[1], np.int32, len(text) + 1, 4 * thinking.offset).astype(np.int64)
        same = pc.equal(byte_views(data, np.minimum(cuts + gap * thought, ends), ends),
                        byte_views(thought_data, thinking_offsets[:-1], thinking_offsets[1:]))
        ok &= same.to_numpy(zero_copy_only=False)[0::2]
    if not ok.all():
        bad = samples.column("id")[int(np.argmin(ok))].as_py()
        raise AnalysisError(f"sample {bad!r}: its text does not end with the separator {separator!r} and its thinking; "
                            "not a [d; t] sample of this run")
    return samples.append_column("document", byte_slices(data, starts, cuts).cast(pa.string()))


def matching_ids(run: Run, where: str) -> dict[str, pa.Array]:
    """Per source, the sorted ids of the samples whose manifest row satisfies `where` (SQL over the view `samples`)."""
    import duckdb

    con = connect([run])
    try:
        table = con.sql(f"SELECT source, id FROM samples WHERE ({where}) ORDER BY source, id").to_arrow_table()
    except duckdb.Error as error:
        columns = ", ".join(row[0] for row in con.sql("DESCRIBE samples").fetchall())
        message = str(error).splitlines()[0]
        raise AnalysisError(f"--where {where!r}: {message} (columns: {columns})") from None
    sources = table.column("source").combine_chunks()
    ids = table.column("id").combine_chunks()
    result = {}
    for name in pc.unique(sources).to_pylist():
        result[name] = ids.filter(pc.equal(sources, name))
    return result


class _Sorted:
    """A sorted Arrow string array, for `bisect`."""

    def __init__(self, array: pa.Array):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> str:
        return self.array[index].as_py()


def among(ids: pa.Array, matches: pa.Array) -> pa.Array:
    """Which of `ids` are in `matches` (sorted): only the matches between the shard's smallest and largest id are
    hashed, so a shard costs what it holds, not what the run holds."""
    if not len(ids) or not len(matches):
        return pa.array([False] * len(ids))
    low, high = pc.min_max(ids).values()
    view = _Sorted(matches)
    start, stop = bisect.bisect_left(view, low.as_py()), bisect.bisect_right(view, high.as_py())
    return pc.is_in(ids, value_set=matches[start:stop])


def read_samples(run: Run, where: str | None = None, limit: int | None = None, seed: int | None = None) -> Iterator[dict[str, Any]]:
    """The samples of `run` (every shard column, plus `document`) that satisfy `where`, at most `limit` of them.

    In shard order; with `seed`, a random sample spread over the run: the shards in a seeded random order
    (weighted by their sample counts) and from each, at random, its share of `limit` of its matching samples,
    round after round until `limit` are found or none is left.
    """
    matches = matching_ids(run, where) if where else None
    shards = [(source, shard) for source, listed in source_shards(run).items() for shard in listed
              if shard[1]["samples"] and (matches is None or source in matches)]
    rng = None if seed is None else np.random.default_rng(seed)
    if rng is not None and shards:
        weights = np.array([shard[1]["samples"] for _, shard in shards], float)
        shards = [shards[i] for i in rng.choice(len(shards), len(shards), replace=False, p=weights / weights.sum())]
    per_round = None if rng is None or limit is None else max(1, math.ceil(limit / max(len(shards), 1)))
    cut, left, orders, round_ = separator(run), math.inf if limit is None else limit, {}, 0
    while left > 0:
        found = 0
        for index, ((source, _), table) in enumerate(zip(shards, read_shards([shard for _, shard in shards]))):
            if matches is not None:
                table = table.filter(among(table.column("id").combine_chunks(), matches[source]))
            if rng is not None:
                order = orders.setdefault(index, rng.permutation(table.num_rows))
                table = table.take(order if per_round is None else order[round_ * per_round:(round_ + 1) * per_round])
            table = table.slice(0, left) if left < table.num_rows else table
            if table.num_rows:
                yield from with_documents(sample_columns(table), cut).to_pylist()
                found, left = found + table.num_rows, left - table.num_rows
                if left <= 0:
                    return
        if per_round is None or not found:
            return
        round_ += 1
