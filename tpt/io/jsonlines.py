"""Append-only JSON-lines files that survive a kill: a last line cut short is not an entry."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def complete_lines(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every entry of a local file."""
    with open(path, "rb") as stream:
        for _, _, entry in parse_lines(stream, path):
            yield entry


def parse_lines(lines: Iterable[bytes], where: str | Path) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(byte offset, byte length, entry) of every line that ends with its newline; a last line
    without one (a writer killed mid-write) is skipped. `where` names the file in errors."""
    offset = 0
    for number, line in enumerate(lines, start=1):
        if not line.endswith(b"\n"):
            return
        try:
            yield offset, len(line), json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{where}:{number}: corrupt line, not JSON ({error}); remove the line to go on") from None
        offset += len(line)
