"""Replace an output folder whole or not at all: written in a temporary sibling, moved into place only on success."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tpt.analysis.runs import AnalysisError


@contextmanager
def replacing_dir(target: Path, marker: str) -> Iterator[Path]:
    """A temporary folder that replaces `target` when the block succeeds.

    An existing `target` is replaced only if it holds `marker` (a file an earlier
    run of the same writer left), so a wrong --output never deletes someone's data.
    """
    target = Path(target).resolve()
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / marker).exists())):
        raise AnalysisError(f"{target} exists and is not an earlier output (no {marker}); choose another --output")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp", dir=target.parent))
    try:
        yield staging
        if target.exists():
            old = staging.with_name(staging.name + ".old")
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
