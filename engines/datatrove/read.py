"""Read step: the source files of this task through tpt's own reader.

datatrove's JsonlReader skips a malformed line with a warning and stops at the
first undecodable one; tpt's reader sets each aside as a counted reject with its
file:line, and names documents without an id by a content hash, so both
engines read the same records and the same rejects.
"""

from __future__ import annotations

from datatrove.pipeline.base import PipelineStep

from tpt.config import SourceConfig
from tpt.engines.datatrove.documents import to_document
from tpt.io.read import read_file
from tpt.progress import Progress
from tpt.schema import Reject


class ReadSources(PipelineStep):
    """Task `rank` reads files rank, rank + world_size, ... of the (source, path) list."""

    name = "read"
    type = "tpt reader"

    def __init__(self, files: list[tuple[str, str]], sources: list[SourceConfig], max_doc_bytes: int, beacons: str):
        super().__init__()
        self.files = files
        self.sources = {s.name: s for s in sources}
        self.max_doc_bytes = max_doc_bytes
        self.beacons = beacons

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        progress = Progress("read", beacons=self.beacons)
        for name, path in self.files[rank::world_size]:
            for item in read_file(self.sources[name], path, self.max_doc_bytes, on_bytes=lambda n: progress.update(0, bytes_read=n)):
                progress.update(1)
                if isinstance(item, Reject):
                    self.stat_update(f"rejected_{item.reason}")
                else:
                    self.stat_update("documents")
                yield to_document(item)
        progress.done()
