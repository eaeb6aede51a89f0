"""Global deduplication across independent datatrove tasks: a shuffle by id between two jobs.

The read job writes every document to the shuffle file of the stage task that
owns its id (`part_of(id, tasks)`, the hash the Beam writer names parts by), so
all copies of an id, from any source, meet in one task, which keeps one with
tpt's own rule. Each read task rewrites only its own files, so a retried task
never duplicates a document.

    OUT/.datatrove/shuffle/part-BBBBB/read-RRRRR.jsonl   from read task R to stage task B

The shuffle folder is a local or shared path, or a URL next to a URL output.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any, TextIO

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from tpt.dedup.ids import keep_one
from tpt.engines.datatrove.documents import dumps, from_document, is_reject, to_document
from tpt.io.output import part_name, part_of
from tpt.io.storage import Folder
from tpt.run.failures import writing


class PartFiles(ExitStack):
    """The files a task writes to other tasks: one per task, staged and opened when its first line comes, each
    appearing whole when the context closes (a retried task rewrites its own files, never duplicating a line)."""

    def __init__(self, shuffle: Folder, name: Callable[[str], str]):
        super().__init__()
        self.shuffle, self.name = shuffle, name  # name: a task's part name -> the file's name
        self.streams: dict[int, TextIO] = {}

    def write(self, part: int, line: str) -> None:
        if part not in self.streams:
            local = self.enter_context(self.shuffle.staged_file(self.name(part_name(part))))
            self.streams[part] = self.enter_context(open(local, "w", encoding="utf-8"))  # noqa: SIM115  (closed with the context)
        self.streams[part].write(line)


def rows_for(shuffle: Folder, pattern: str) -> Iterator[Any]:
    """Every JSON line the other tasks wrote to the files matching `pattern`, parsed, a line at a time."""
    for name in shuffle.glob(pattern):
        yield from shuffle.json_lines(name)


class ScatterById(PipelineStep):
    """Route each document (and read reject) to the stage task that owns its id."""

    name = "scatter by id"
    type = "tpt shuffle"

    def __init__(self, folder: str, tasks: int):
        super().__init__()
        self.folder = folder
        self.tasks = tasks

    def run(self, data, rank: int = 0, world_size: int = 1) -> None:
        shuffle = Folder(self.folder)
        with writing(shuffle.url_of(f"*/read-{rank:05d}.jsonl")), PartFiles(shuffle, lambda part: f"{part}/read-{rank:05d}.jsonl") as files:
            for document in data:
                files.write(part_of(document.id, self.tasks), dumps(document) + "\n")
                self.stat_update("scattered")


class GatherById(PipelineStep):
    """Everything addressed to this task: read rejects, then one document per id in id order, its duplicates as rejects."""

    name = "deduplicate"
    type = "tpt shuffle"

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        by_id, shuffle = defaultdict(list), Folder(self.folder)
        for row in rows_for(shuffle, f"{part_name(rank)}/read-*.jsonl"):
            document = Document(**row)
            if is_reject(document):
                yield document
            else:
                by_id[document.id].append(from_document(document))
        for doc_id in sorted(by_id):
            kept, duplicates = keep_one(by_id[doc_id])
            for reject in duplicates:
                self.stat_update("rejected_duplicate_id")
                yield to_document(reject)
            yield to_document(kept)
