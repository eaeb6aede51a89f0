"""A folder on a local disk or behind any fsspec URL (gs://, s3://, ...), with the few operations outputs need,
and `staged_file`, the one way tpt writes a file.

Every file appears whole or not at all, so a reader never sees half a file and
a failed write leaves the previous file as it was: local files are written
under a temporary name and renamed into place; files for an object store are
written to a local staging copy and uploaded whole (an object store shows an
object only once its upload completes). Names are relative to the folder and
use `/` on every filesystem. A folder's own path is always taken literally: glob
characters in it (`out[1]`, `o*`) are part of its name, never a pattern that
could reach a sibling folder (fsspec's `rm`, `cat` and `copy` expand them).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import glob_translate

GLOB_CHARACTERS = re.compile(r"[*?[]")


def filesystem(location: str | Path) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of a local path or fsspec URL, and the path on it."""
    try:
        return fsspec.core.url_to_fs(str(location))
    except (ImportError, ValueError) as error:  # an fsspec backend not installed, or an unknown protocol
        raise ValueError(f"{location}: {error}") from None


@contextmanager
def staged_file(target: str | Path) -> Iterator[str]:
    """A local path to write `target` (a local path or an fsspec URL) at; when the block ends without error,
    `target` holds it whole, and otherwise `target` is as it was."""
    fs, path = filesystem(target)
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        local = f"{path}.tmp{os.getpid()}.{secrets.token_hex(4)}"  # unique per writer, threads included
        try:
            yield local
            os.replace(local, path)
        finally:
            Path(local).unlink(missing_ok=True)
        return
    with tempfile.TemporaryDirectory(prefix="tpt-stage-") as staging:
        local = os.path.join(staging, os.path.basename(path))
        yield local
        fs.put_file(local, path)


class Folder:
    def __init__(self, location: str | Path):
        self.fs, root = filesystem(location)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.root = str(Path(root).resolve()) if self.is_local else root.rstrip("/")
        # what other processes are given: the absolute path, or the URL as written
        self.url = self.root if self.is_local else str(location).rstrip("/")

    def path(self, name: str = "") -> str:
        """`name` as a path of this folder's filesystem."""
        return f"{self.root}/{name}" if name else self.root

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    def glob(self, pattern: str) -> list[str]:
        """The names matching `pattern` (fsspec's glob: `*`, `?` and `[...]` within one name, `**` across names),
        sorted; listings are read afresh, since other processes write here."""
        self.fs.invalidate_cache()
        parts = pattern.split("/")
        fixed = next((i for i, part in enumerate(parts) if GLOB_CHARACTERS.search(part)), len(parts))
        if fixed == len(parts):
            return [pattern] if self.exists(pattern) else []
        base = self.path("/".join(parts[:fixed]))
        depth = None if "**" in pattern else len(parts) - fixed
        matches = re.compile(glob_translate(pattern)).match
        names = (path[len(self.root) + 1:] for path in self.fs.find(base, maxdepth=depth, withdirs=True))  # listed literally
        return sorted(name for name in names if name and matches(name))

    def exists(self, name: str) -> bool:
        self.fs.invalidate_cache()
        return self.fs.exists(self.path(name))

    def remove(self, *names: str) -> None:
        """Remove files or whole subfolders; missing ones are fine."""
        for name in names:
            path = self.path(name)
            try:
                if self.is_local or not GLOB_CHARACTERS.search(path):
                    self.fs.rm(path, recursive=True)
                else:  # an object store's rm takes the path for a pattern: the objects under it, one by one
                    for file in self.fs.find(path):
                        self.fs.rm_file(file)
            except FileNotFoundError:
                pass

    def copy(self, name: str, target: str) -> None:
        """Copy file or subfolder `name` to the path `target` on the same filesystem."""
        source = self.path(name)
        files = self.fs.find(source)  # listed literally: copy(recursive=True) would expand glob characters
        targets = [target + file[len(source):] for file in files]
        for folder in {os.path.dirname(path) for path in targets} if self.is_local else ():
            os.makedirs(folder, exist_ok=True)
        self.fs.copy(files, targets)

    def read_text(self, name: str) -> str:
        return self.fs.cat_file(self.path(name)).decode("utf-8")

    def read_json(self, name: str):
        return json.loads(self.read_text(name))

    def json_lines(self, name: str) -> Iterator[Any]:
        """Each line of JSON-lines file `name`, parsed, read a buffer at a time: a file of any size in little memory."""
        with self.fs.open(self.path(name), "rb") as lines:
            yield from map(json.loads, lines)

    def read_many(self, names: list[str]) -> list[bytes]:
        """The contents of `names`, in order; fetched concurrently where the filesystem can (gcsfs, s3fs),
        since a finished run's many small parts would take minutes one by one on an object store."""
        paths = [self.path(name) for name in names]  # cat_ranges reads each path as it is (cat expands patterns)
        return self.fs.cat_ranges(paths, None, None, on_error="raise") if paths else []

    def write_text(self, name: str, text: str) -> None:
        with self.staged_file(name) as local:
            Path(local).write_text(text, encoding="utf-8")

    def read_parquet(self, name: str, **options) -> pa.Table:
        with self.fs.open(self.path(name), "rb") as stream:
            return pq.read_table(stream, **options)

    def write_parquet(self, name: str, table: pa.Table) -> None:
        with self.staged_file(name) as local:
            pq.write_table(table, local)

    def staged_file(self, name: str) -> AbstractContextManager[str]:
        """A local path to write `name` at; when the block ends without error, `name` holds it whole."""
        return staged_file(self.url_of(name))

    @contextmanager
    def staged_folder(self, name: str) -> Iterator[str]:
        """A fresh local folder path to write subfolder `name` at, replacing what was there.

        Local outputs are written in place (a retried writer rewrites the same files);
        remote ones are uploaded file by file when the block ends without error.
        """
        self.remove(name)
        if self.is_local:
            yield self.path(name)
            return
        with tempfile.TemporaryDirectory(prefix="tpt-stage-") as staging:
            local = os.path.join(staging, "folder")
            yield local
            files = sorted(str(p) for p in Path(local).rglob("*") if p.is_file())
            self.fs.put(files, [f"{self.path(name)}/{Path(f).relative_to(local).as_posix()}" for f in files])
