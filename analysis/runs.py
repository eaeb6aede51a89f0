"""Find and validate tpt run outputs, and open them in DuckDB as one view, `samples`.

A run output is a folder with `manifest.parquet` (schema version in the Arrow
metadata `tpt_schema_version`) and `summary.json`; anything else is refused
before a single statistic is computed. A dataset `tpt publish` wrote is read in
place from its Parquet files: its rows are `samples` too, and, with their text,
the view `texts`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tpt.assets import cache_dir
from tpt.io.storage import Folder
from tpt.schema import MANIFEST_SCHEMA, SCHEMA_VERSION

RUN_FILES = ("manifest.parquet", "summary.json")
# Columns added to schema version 1 after its first manifests were written (with their DuckDB type):
# an older manifest reads them as null.
LATER_COLUMNS = {"thinking_budget": "INTEGER", "duplicate_of": "VARCHAR", "duplicate_kind": "VARCHAR", "duplicate_similarity": "FLOAT"}


class AnalysisError(ValueError):
    """Input the analysis cannot use (not a run output, another schema version, bad SQL), said plainly."""


@dataclass(frozen=True)
class Run:
    """One validated run output."""

    name: str  # the `run` column of `samples`: the folder name made unique, or its --label
    root: Path  # the run output, or its local copy (manifest and summary) for a URL
    summary: dict[str, Any]
    location: str = ""  # the folder or URL as given, where the shards are read
    data_files: tuple[str, ...] = ()  # a published dataset (tpt publish): its Parquet files, read in place

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.parquet"


def load_run(folder: str | Path) -> Run:
    """The run output (or published dataset) in `folder` (or at a URL), or an AnalysisError saying what is wrong with it."""
    published = load_published(str(folder))
    if published is not None:
        return published
    root = copy_down(str(folder)) if "://" in str(folder) else Path(folder)
    if not root.exists():
        raise AnalysisError(f"{root}: no such folder")
    if not root.is_dir():
        raise AnalysisError(f"{root}: not a folder; expected a `tpt run` output folder")
    manifest, summary = root / "manifest.parquet", root / "summary.json"
    if not manifest.is_file():
        raise AnalysisError(f"{root} is not a tpt run output: no manifest.parquet "
                            "(a finished `tpt run` writes manifest.parquet and summary.json)")
    if not summary.is_file():
        raise AnalysisError(f"{root}: has manifest.parquet but no summary.json; the run did not finish")
    check_manifest_schema(manifest)
    try:
        summary_data = json.loads(summary.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnalysisError(f"{summary}: not valid JSON: {error}") from None
    return Run(root.resolve().name, root.resolve(), summary_data, str(folder) if "://" in str(folder) else str(root.resolve()))


def load_published(location: str) -> Run | None:
    """The dataset `tpt publish` wrote at `location`, or None when there is none."""
    from tpt.analysis.card import is_card

    folder = Folder(location)
    if not folder.exists("") or not is_card(folder):
        return None
    files = tuple(folder.url_of(name) for name in folder.glob("data/*/*.parquet"))
    if not files:
        raise AnalysisError(f"{location}: a dataset card but no data/*/*.parquet; not a whole `tpt publish` output")
    with folder.fs.open(folder.path(files[0][len(folder.url) + 1:]), "rb") as stream:
        _check_schema(pq.read_schema(stream), files[0], published=True)
    name = folder.root.rstrip("/").rsplit("/", 1)[-1]
    return Run(name, Path(folder.root) if folder.is_local else cache_dir(), {}, folder.url, files)


def copy_down(url: str) -> Path:
    """A local copy of what the analysis reads of a run output at a URL (gs://...): its manifest and summary."""
    source = Folder(url)
    local = cache_dir() / "runs" / hashlib.sha256(source.url.encode()).hexdigest()[:16] / source.url.rsplit("/", 1)[-1]
    local.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        (local / name).unlink(missing_ok=True)
        if source.exists(name):
            source.fs.get_file(source.path(name), str(local / name))
    return local


def check_manifest_schema(manifest: Path) -> None:
    """Refuse a manifest of another schema version or with missing columns."""
    try:
        schema = pq.read_schema(manifest)
    except Exception as error:  # pyarrow raises several types for a file that is not Parquet
        raise AnalysisError(f"{manifest}: not a readable Parquet file: {error}") from None
    _check_schema(schema, manifest)


def _check_schema(schema, manifest, published: bool = False) -> None:
    metadata = schema.metadata or {}
    version = metadata.get(b"tpt_schema_version")
    if version is None:
        raise AnalysisError(f"{manifest}: no tpt_schema_version in the Parquet schema metadata; not a tpt "
                            + ("dataset" if published else "manifest"))
    if version.decode() != str(SCHEMA_VERSION):
        raise AnalysisError(
            f"{manifest}: tpt schema version {version.decode()}, but this tpt reads version {SCHEMA_VERSION}; "
            "analyse it with the tpt that wrote it, or rerun the pipeline"
        )
    missing = [name for name in MANIFEST_SCHEMA.names if name not in schema.names and name not in LATER_COLUMNS]
    if missing:
        raise AnalysisError(f"{manifest}: missing manifest columns {missing} (schema version {SCHEMA_VERSION} has {MANIFEST_SCHEMA.names})")


def load_runs(folders: list[str | Path], labels: list[str] | None = None) -> list[Run]:
    """Validated runs, named by `labels` (one per run) or by their folders, a repeated name told apart by a suffix."""
    if not folders:
        raise AnalysisError("no run output folders given")
    if labels and len(labels) != len(folders):
        raise AnalysisError(f"--label: {len(labels)} labels for {len(folders)} runs; give one per run, in order")
    if labels and len(set(labels)) != len(labels):
        raise AnalysisError(f"--label: each run needs its own label; repeated: {sorted({x for x in labels if labels.count(x) > 1})}")
    runs: list[Run] = []
    for index, folder in enumerate(folders):
        run = load_run(folder)
        taken = {r.name for r in runs}
        if run.location in {r.location for r in runs}:
            raise AnalysisError(f"{folder}: given twice")
        name, k = (labels[index], 2) if labels else (run.name, 2)
        while name in taken:
            name, k = f"{run.name}-{k}", k + 1
        runs.append(dataclasses.replace(run, name=name))
    return runs


def connect(runs: list[Run], threads: int | None = None):
    """A DuckDB connection with the view `samples`: every manifest row of every run, plus its `run`."""
    import duckdb

    con = duckdb.connect(config={"threads": threads} if threads else {})
    parts = [f"SELECT {_columns(run)}, {sql_string(run.name)} AS run FROM {_source(con, run)}" for run in runs]
    con.execute("CREATE VIEW samples AS " + " UNION ALL ".join(parts))
    published = [f"SELECT *, {sql_string(run.name)} AS run FROM {_source(con, run)}" for run in runs if run.data_files]
    if published:
        con.execute("CREATE VIEW texts AS " + " UNION ALL BY NAME ".join(published))
    return con


def _source(con, run: Run) -> str:
    """The SQL table of a run's rows: its manifest, or a published dataset's files (read through fsspec at a URL)."""
    if not run.data_files:
        return f"read_parquet({sql_string(str(run.manifest))})"
    fs = Folder(run.location).fs
    if "://" in run.data_files[0] and not any(name in con.list_filesystems() for name in _protocols(fs)):
        con.register_filesystem(fs)
    return "read_parquet([" + ", ".join(sql_string(name) for name in run.data_files) + "])"


def _protocols(fs) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _columns(run: Run) -> str:
    """The manifest columns of `run` in schema order, a later column its manifest lacks as a typed null."""
    if run.data_files:
        return ", ".join(MANIFEST_SCHEMA.names)
    present = set(pq.read_schema(run.manifest).names)
    return ", ".join(name if name in present else f"NULL::{LATER_COLUMNS[name]} AS {name}" for name in MANIFEST_SCHEMA.names)


def sql_string(value: str) -> str:
    """`value` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
