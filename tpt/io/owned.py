"""The one rule for replacing what is at an output path: tpt deletes nothing it did not write.

Every folder a tpt command writes (a run's output folder, an export, a held-out
set, a report, the converted teacher) holds a marker file, `.tpt-owner`, naming
the command. A command writes over a path only if nothing is there, an empty
folder is there, or a folder with its own marker is; anything else (a user's
files, a regular file, another command's output) is refused with one line
naming the path, before anything is written.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tpt.io.storage import Folder

MARKER = ".tpt-owner"


class NotOwned(FileExistsError):
    """A path tpt would write over holds something it did not write (an OSError: the CLI prints it in one line)."""


def check_owned(folder: Folder, owner: str, written_before_markers: Callable[[Folder], bool] | None = None) -> None:
    """Refuse, naming the path, unless `folder` is missing, empty, or was written by `owner`.

    `written_before_markers` tells an output `owner` wrote before it left markers (kept working across the upgrade).
    """
    if not folder.exists(""):
        return
    if not folder.fs.isdir(folder.root):
        raise NotOwned(f"{folder.url} is a file, not a folder `{owner}` wrote; choose another path")
    if folder.exists(MARKER):
        wrote = folder.read_text(MARKER).strip()
        if wrote != owner:
            raise NotOwned(f"{folder.url} is not a folder `{owner}` wrote (`{wrote}` wrote it); choose another")
        return
    if folder.glob("*") and not (written_before_markers and written_before_markers(folder)):
        raise NotOwned(f"{folder.url} is not a folder `{owner}` wrote: it holds files tpt did not write (no {MARKER}); "
                       "choose another, or empty it yourself")


def mark(folder: Folder, owner: str) -> None:
    """Leave `owner`'s marker in `folder`, so that its next run may write over what this one wrote."""
    if not folder.exists(MARKER):
        folder.write_text(MARKER, owner + "\n")


@contextmanager
def replacing_folder(target: str | Path, owner: str,
                     written_before_markers: Callable[[Folder], bool] | None = None) -> Iterator[Path]:
    """A fresh local folder beside `target` to write into, which replaces `target` whole when the block ends without
    error; on an error `target` is left as it was. Checked first (`check_owned`), so a wrong path costs nothing."""
    target = Path(target).absolute()
    check_owned(Folder(target), owner, written_before_markers)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    previous = staging.with_suffix(".previous")
    try:
        yield staging
        (staging / MARKER).write_text(owner + "\n")
        if target.exists():
            target.rename(previous)  # out of the way first: a kill between the renames leaves both whole
        staging.rename(target)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
