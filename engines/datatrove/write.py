"""Write step: this task's records as one MDS part per source, its rejects as one JSONL part per source.

A stage task owns the ids hashed to it, so its part is `part_name(rank)`: with
as many tasks as `output.parts`, the same parts Beam writes. A retried task
first removes every part an earlier attempt wrote, so nothing is written twice.
"""

from __future__ import annotations

from collections import defaultdict

from datatrove.pipeline.base import PipelineStep

from tpt.engines.datatrove.documents import from_document, is_reject
from tpt.io.output import OutputLayout, part_name
from tpt.run.plan import RunPlan


class WriteParts(PipelineStep):
    name = "write"
    type = "tpt writer"

    def __init__(self, plan: RunPlan):
        super().__init__()
        self.plan = plan

    def run(self, data, rank: int = 0, world_size: int = 1) -> None:
        records, rejects = defaultdict(list), defaultdict(list)
        for document in data:
            item = from_document(document)
            (rejects if is_reject(document) else records)[item.source].append(item)
        part = part_name(rank)
        clear_part(self.plan.staging, part)
        for source, group in sorted(records.items()):
            self.stat_update("written", value=self.plan.write_part(source, part, group))
        for source, group in sorted(rejects.items()):
            self.stat_update("rejected", value=self.plan.write_rejects(source, part, group))


def clear_part(layout: OutputLayout, part: str) -> None:
    """Remove what an earlier attempt of this task wrote for any source: a retry may set aside a document the
    killed attempt wrote (a generation that failed once), and a stale part must not keep it."""
    layout.remove(*layout.glob(f"{layout.mds}/*/{part}"), *layout.glob(f"{layout.rejects}/*/{part}.jsonl"),
                  *layout.glob(f"{layout.manifest_parts}/*/{part}.parquet"))
