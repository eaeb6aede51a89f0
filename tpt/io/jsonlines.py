"""Append-only JSON-lines files that survive a kill: a last line cut short is not an entry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def complete_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, entry) for every complete line; a last line without its newline (a writer killed mid-write) is skipped."""
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.endswith("\n"):
                return
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: corrupt line, not JSON ({error}); remove the line to go on") from None
