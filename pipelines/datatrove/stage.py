"""Any core Stage as a datatrove step: set up once per task, fed batches of `stage.batch_size` records."""

from __future__ import annotations

from collections.abc import Iterator

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from pipelines.datatrove.documents import from_document, is_reject, to_document
from tpt.progress import Progress
from tpt.schema import Record, Reject
from tpt.stages.base import Stage


class ApplyStage(PipelineStep):
    """Records go through the stage in batches; rejects from earlier steps pass on untouched."""

    type = "tpt stage"

    def __init__(self, stage: Stage, beacons: str):
        self.name = stage.name  # before the base class names the step's stats after it
        super().__init__()
        self.stage = stage
        self.beacons = beacons

    def run(self, data, rank: int = 0, world_size: int = 1):
        self.stage.setup()
        progress = None if getattr(self.stage, "own_progress", False) else Progress(self.stage.name, beacons=self.beacons)
        batch: list[Record] = []
        for document in data:
            if is_reject(document):
                yield document
                continue
            batch.append(from_document(document))
            if len(batch) == self.stage.batch_size:
                yield from self._process(batch, progress)
                batch = []
        if batch:
            yield from self._process(batch, progress)

    def _process(self, batch: list[Record], progress: Progress | None) -> Iterator[Document]:
        with self.track_time(unit="batch"):
            results = self.stage.process(batch)
        if progress is not None:
            progress.update(len(batch))
        for item in results:
            self.stat_update(f"rejected_{item.reason}" if isinstance(item, Reject) else "kept")
            yield to_document(item)
