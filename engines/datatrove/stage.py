"""Any core Stage as a datatrove step: set up once per task, its stream fed document by document, closed at the end."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from tpt.engines.datatrove.documents import from_document, is_reject, to_document
from tpt.progress import Progress
from tpt.schema import Reject
from tpt.stages.base import Stage


class ApplyStage(PipelineStep):
    """Records go through the stage's stream; rejects from earlier steps pass on untouched."""

    type = "tpt stage"

    def __init__(self, stage: Stage, beacons: str):
        self.name = stage.name  # before the base class names the step's stats after it
        super().__init__()
        self.stage = stage
        self.beacons = beacons

    def run(self, data, rank: int = 0, world_size: int = 1):
        self.stage.setup()
        progress = Progress(self.stage.name, beacons=self.beacons)
        try:
            stream = self.stage.stream(progress)
            for document in data:
                if is_reject(document):
                    yield document
                else:
                    yield from self._hand_on(stream.push(from_document(document)))
            yield from self._hand_on(stream.finish())
        finally:
            progress.done()
            self.stage.close()

    def _hand_on(self, items: Iterable) -> Iterator[Document]:
        for item in items:
            self.stat_update(f"rejected_{item.reason}" if isinstance(item, Reject) else "kept")
            yield to_document(item)
