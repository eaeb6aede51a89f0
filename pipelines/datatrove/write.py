"""Write step: this task's records as one MDS part per source, its rejects as one JSONL part per source.

A stage task owns the ids hashed to it, so its part is `part_name(rank)`: with
as many tasks as `output.parts`, the same parts Beam writes. A retried task
first removes every part an earlier attempt wrote, so nothing is written twice.
"""

from __future__ import annotations

from collections import defaultdict

from datatrove.pipeline.base import PipelineStep

from pipelines.datatrove.documents import from_document, is_reject
from tpt.config import OutputConfig
from tpt.io.output import OutputLayout, part_name, write_part, write_rejects


class WriteParts(PipelineStep):
    name = "write"
    type = "tpt writer"

    def __init__(self, root: str, fields: list[str], output: OutputConfig, separator: str | None):
        super().__init__()
        self.root, self.fields, self.output, self.separator = root, fields, output, separator  # separator: joins [d; t]

    def run(self, data, rank: int = 0, world_size: int = 1) -> None:
        records, rejects = defaultdict(list), defaultdict(list)
        for document in data:
            item = from_document(document)
            (rejects if is_reject(document) else records)[item.source].append(item)
        layout, part = OutputLayout(self.root), part_name(rank)
        clear_part(layout, part)
        for source, group in sorted(records.items()):
            self.stat_update("written", value=write_part(layout, source, part, group, self.fields, self.output, self.separator))
        for source, group in sorted(rejects.items()):
            self.stat_update("rejected", value=write_rejects(layout, source, part, group))


def clear_part(layout: OutputLayout, part: str) -> None:
    """Remove what an earlier attempt of this task wrote for any source: a retry may set aside a document the
    killed attempt wrote (a generation that failed once), and a stale part must not keep it."""
    layout.remove(*layout.glob(f"{layout.mds}/*/{part}"), *layout.glob(f"{layout.rejects}/*/{part}.jsonl"),
                  *layout.glob(f"{layout.manifest_parts}/*/{part}.parquet"))
