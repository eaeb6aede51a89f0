"""Append-only JSON-lines files that survive a kill: a last line cut short is not an entry."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def complete_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, entry) for every complete line of a local file."""
    with open(path, encoding="utf-8") as stream:
        yield from parse_lines(stream, path)


def parse_lines(lines: Iterable[str], where: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, entry) for every line that ends with its newline; a last line without one
    (a writer killed mid-write) is skipped. `where` names the file in errors."""
    for number, line in enumerate(lines, start=1):
        if not line.endswith("\n"):
            return
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}:{number}: corrupt line, not JSON ({error}); remove the line to go on") from None
