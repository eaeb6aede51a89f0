"""Find and validate tpt run outputs, and open them in DuckDB as one view, `samples`.

A run output is a folder with `manifest.parquet` (schema version in the Arrow
metadata `tpt_schema_version`) and `summary.json`; anything else is refused
before a single statistic is computed.
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

    name: str  # the `run` column of `samples`: the folder name, made unique
    root: Path
    summary: dict[str, Any]

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.parquet"


def load_run(folder: str | Path) -> Run:
    """The run output in `folder` (or at a URL), or an AnalysisError saying what is wrong with it."""
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
    return Run(root.resolve().name, root.resolve(), summary_data)


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
    metadata = schema.metadata or {}
    version = metadata.get(b"tpt_schema_version")
    if version is None:
        raise AnalysisError(f"{manifest}: no tpt_schema_version in the Parquet schema metadata; not a tpt manifest")
    if version.decode() != str(SCHEMA_VERSION):
        raise AnalysisError(
            f"{manifest}: tpt schema version {version.decode()}, but this tpt reads version {SCHEMA_VERSION}; "
            "analyse it with the tpt that wrote it, or rerun the pipeline"
        )
    missing = [name for name in MANIFEST_SCHEMA.names if name not in schema.names and name not in LATER_COLUMNS]
    if missing:
        raise AnalysisError(f"{manifest}: missing manifest columns {missing} (schema version {SCHEMA_VERSION} has {MANIFEST_SCHEMA.names})")


def load_runs(folders: list[str | Path]) -> list[Run]:
    """Validated runs; runs whose folders share a name are told apart by a suffix."""
    if not folders:
        raise AnalysisError("no run output folders given")
    runs: list[Run] = []
    for folder in folders:
        run = load_run(folder)
        taken = {r.name for r in runs}
        if run.root in {r.root for r in runs}:
            raise AnalysisError(f"{folder}: given twice")
        name, k = run.name, 2
        while name in taken:
            name, k = f"{run.name}-{k}", k + 1
        runs.append(dataclasses.replace(run, name=name))
    return runs


def connect(runs: list[Run], threads: int | None = None):
    """A DuckDB connection with the view `samples`: every manifest row of every run, plus its `run`."""
    import duckdb

    con = duckdb.connect(config={"threads": threads} if threads else {})
    parts = [f"SELECT {_columns(run)}, {sql_string(run.name)} AS run FROM read_parquet({sql_string(str(run.manifest))})" for run in runs]
    con.execute("CREATE VIEW samples AS " + " UNION ALL ".join(parts))
    return con


def _columns(run: Run) -> str:
    """The manifest columns of `run` in schema order, a later column its manifest lacks as a typed null."""
    present = set(pq.read_schema(run.manifest).names)
    return ", ".join(name if name in present else f"NULL::{LATER_COLUMNS[name]} AS {name}" for name in MANIFEST_SCHEMA.names)


def sql_string(value: str) -> str:
    """`value` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
