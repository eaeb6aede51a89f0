"""A run's streams.yaml, read for training: each relative `local` is the file's own folder's.

`tpt run` writes `local: mds/<source>`, relative, so a run folder trains wherever
it is copied or mounted; files written with absolute paths read as they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def read_streams(spec: dict[str, dict[str, Any]] | str) -> dict[str, dict[str, Any]]:
    """The `streams` mapping: given inline, or the path of a streams.yaml that `tpt run` wrote."""
    if isinstance(spec, dict):
        return spec
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"train_loader.dataset.streams: no streams file at {path} "
                                "(run `tpt run` first: it writes OUT/streams.yaml)")
    return parse_streams(path.read_text(), str(path), folder=str(path.resolve().parent))


def parse_streams(text: str, where: str, folder: str | None) -> dict[str, dict[str, Any]]:
    """The `streams:` mapping of a streams.yaml's text (`where` names it in errors), each relative `local` joined to
    `folder`, the file's own (None: a file read from a URL, whose streams read their `remote`)."""
    document = yaml.safe_load(text)
    streams = document.get("streams") if isinstance(document, dict) else None
    if not isinstance(streams, dict) or not streams:
        raise ValueError(f"{where}: expected a `streams:` mapping of stream name to {{local, remote, proportion|repeat}}")
    resolved = {}
    for name, stream in streams.items():
        if not isinstance(stream, dict):
            raise ValueError(f"{where}: stream {name!r} is a {type(stream).__name__}, expected a mapping of {{local, remote, ...}}")
        local = stream.get("local")
        if folder and local and not os.path.isabs(local):
            stream = {**stream, "local": os.path.join(folder, local)}
        resolved[name] = stream
    return resolved
