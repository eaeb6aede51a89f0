"""Finish a run's output once every part is written: merged MDS indexes, the
manifest, streams.yaml and summary.json, all in the staging folder, then
published over the previous run's outputs in one swap.

The summary is computed from what was written (manifest rows and reject
files), not from engine counters, so it is exact on every engine and proves the
run's invariant: every row read is either a sample or a reject.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from tpt.config import PipelineConfig
from tpt.io.mds import merge_indexes
from tpt.io.output import OutputLayout, RejectCounts, merge_manifest, value_counts
from tpt.io.publish import publish, staged
from tpt.redact import redact
from tpt.schema import SCHEMA_VERSION

log = logging.getLogger(__name__)

TOKEN_COLUMNS = ("doc_tokens", "kept_tokens", "thinking_tokens", "sample_tokens")


class Reporting(Protocol):
    """What summary.json asks of each stage: its own figures, read from the finished run's output."""

    name: str

    def report(self, layout: OutputLayout, rejects: RejectCounts) -> dict[str, Any]: ...


def finalize(layout: OutputLayout, config: PipelineConfig, stages: Sequence[Reporting], wall_seconds: float,
             engine: dict[str, Any]) -> dict[str, Any]:
    """Merge the staged parts of a finished run, write its streams.yaml and summary.json (last), and publish it
    over the previous run's outputs (tpt.io.publish); safe to repeat."""
    staging = staged(layout)
    merge_mds_indexes(staging)
    manifest = merge_manifest(staging)
    rejects = RejectCounts.read(staging)
    written = value_counts(manifest.column("source"))
    write_streams(staging, config, written, published=layout)
    summary = build_summary(config, manifest, rejects, wall_seconds, engine)
    for stage in stages:
        report = stage.report(staging, rejects)
        if report:
            summary["stages"].setdefault(stage.name, {}).update(report)
    summary["output"] = layout.url
    summary["config"] = recorded_config(config)
    staging.write_text(staging.summary, json.dumps(summary, indent=2) + "\n")
    publish(layout)
    return summary


def recorded_config(config: PipelineConfig) -> dict[str, Any]:
    """The config a run was made with, for its summary (`tpt publish` puts it on the dataset card): every key,
    with the credentials of any URL in it (https://user:token@host, ?api_key=...) redacted (tpt.redact)."""
    return json.loads(redact(json.dumps(config.model_dump(mode="json"))))


def merge_mds_indexes(layout: OutputLayout) -> None:
    """OUT/mds/<source>/index.json: the shards of all the source's parts, each named by its part folder.

    Rebuilt from the parts' own indexes every time, so repeating it is harmless; at any fsspec URL.
    """
    parts: dict[str, list[str]] = {}
    for name in layout.glob(f"{layout.mds}/*/part-*/index.json"):
        parts.setdefault(name.split("/")[1], []).append(name)
    for source, names in parts.items():
        indexes = [(name.split("/")[2], data) for name, data in zip(names, layout.read_many(names))]
        layout.write_text(f"{layout.mds}/{source}/index.json", merge_indexes(indexes))


def write_streams(layout: OutputLayout, config: PipelineConfig, written: Counter, published: OutputLayout) -> None:
    """streams.yaml: the `train_loader.dataset.streams` block, one stream per source with samples.

    A local output names its shards relative to the file's own folder (`local: mds/<source>`), so the run
    folder trains wherever it is copied; `tpt streams OUT` prints the block with absolute paths or a remote."""
    sources = [s for s in config.sources if written[s.name]]
    total_weight = sum(s.weight for s in sources)
    remote = config.output.remote or (None if published.is_local else published.url)  # a URL output is its own remote
    streams = {}
    for source in sources:
        stream: dict[str, Any] = {}
        if published.is_local:  # a remote-only stream: streaming picks a local cache folder
            stream["local"] = f"{published.mds}/{source.name}"
        if remote:
            stream["remote"] = f"{remote.rstrip('/')}/mds/{source.name}"
        if config.output.weighting == "proportion":
            stream["proportion"] = round(source.weight / total_weight, 6)
        else:
            stream["repeat"] = source.weight
        streams[source.name] = stream
    for source in config.sources:
        if not written[source.name]:
            log.warning("source %r wrote no samples; it has no stream", source.name)
    header = ("# train_loader.dataset.streams of a Composer YAML: this file's path (`tpt train` reads `local` relative to\n"
              "# this folder), or the block `tpt streams OUT` prints with absolute paths or a remote, to paste.\n")
    layout.write_text(layout.streams, header + yaml.safe_dump({"streams": streams}, sort_keys=False))


def build_summary(config: PipelineConfig, manifest: pa.Table, rejects: RejectCounts, wall_seconds: float,
                  engine: dict[str, Any]) -> dict[str, Any]:
    per_source = {}
    for source in config.sources:
        rows = manifest.filter(pc.equal(manifest.column("source"), source.name))
        per_source[source.name] = {
            "weight": source.weight,
            "read": rows.num_rows + rejects.total(source.name),
            "written": rows.num_rows,
            "rejected": rejects.total(source.name),
            "truncated": _count_true(rows, "truncated"),
            **_token_sums(rows),
            "rejects": rejects.by_stage(source.name),
        }
    read = sum(s["read"] for s in per_source.values())
    return {
        "schema_version": SCHEMA_VERSION,
        "engine": engine,
        "wall_seconds": round(wall_seconds, 3),
        "docs_per_second": round(read / wall_seconds, 2) if wall_seconds > 0 else None,
        "totals": {
            "read": read,
            "written": manifest.num_rows,
            "rejected": rejects.total(),
            "truncated": _count_true(manifest, "truncated"),
            **_token_sums(manifest),
        },
        "stages": {stage: {"rejected": reasons} for stage, reasons in rejects.by_stage().items()},
        "sources": per_source,
    }


def _count_true(table: pa.Table, column: str) -> int:
    return int(pc.sum(pc.cast(table.column(column), pa.int64())).as_py() or 0)


def _token_sums(table: pa.Table) -> dict[str, int]:
    return {name: int(pc.sum(table.column(name)).as_py() or 0) for name in TOKEN_COLUMNS}
