"""What every stage is, and the one lifecycle both engines honour.

Engines construct a stage in the driver (it must pickle: configuration only;
nothing is loaded in `__init__`), call `check()` there before anything is
written (a missing model or template, an unreachable server: the run stops
while the previous run's outputs are still whole), and then, in each worker process:

- `setup()` before the first stream, to load tokenizers or models or open
  connections (a repeat call does nothing);
- `stream(progress)` for each bundle or task: a `StageStream` that takes records
  one at a time (`push`) and hands back whatever is finished, then everything
  left (`finish`);
- `close()` at teardown, to release what `setup` took;
- `report(layout, rejects)` in the driver once the run is written, for summary.json.

Two kinds of stage fill that in. A `BatchStage` (truncate, classify) has one
hook, `process(batch)`, and is streamed `batch_size` records at a time. A stage
that keeps work in flight (think) implements `stream` itself.

A stage returns each record it keeps, changed, and a `Reject` for each it sets
aside; it never drops one. It counts its own progress on the `Progress` given.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from tpt.schema import Record, Reject, stage_fields

if TYPE_CHECKING:
    from tpt.io.output import OutputLayout, RejectCounts
    from tpt.progress import Progress


class StageStream:
    """Records in, one at a time; finished records and rejects out, in any order."""

    def push(self, record: Record) -> list[Record | Reject]:
        """Take one record; return whatever is finished (a stream may wait here while it is full)."""
        raise NotImplementedError

    def finish(self) -> Iterator[Record | Reject]:
        """Everything still in the stream, as it finishes."""
        raise NotImplementedError


class Stage:
    name: ClassVar[str]
    worker_state: ClassVar[tuple[str, ...]] = ()  # the attributes `setup` fills, in the worker's process

    def __getstate__(self) -> dict[str, Any]:
        """Configuration only: what `setup` loaded or opened (models, a backend's threads and connections) belongs to
        its process, and with one local worker datatrove sets the stages up in the driver, then copies the plan."""
        return {**self.__dict__, **dict.fromkeys(self.worker_state)}

    @property
    def adds(self) -> tuple[str, ...]:
        """The record fields this stage fills in (declared in tpt.schema)."""
        return stage_fields(self.name)

    def check(self) -> None:
        """In the driver, before the run writes anything: fail now, with a clear error, on what would fail later."""

    def setup(self) -> None:
        """Load what the stage needs, once per worker process, before its first stream; repeat calls do nothing."""

    def stream(self, progress: Progress) -> StageStream:
        """Records through the stage, for one bundle or task (after `setup`)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what `setup` took; the stage can be set up again afterwards."""

    def report(self, layout: OutputLayout, rejects: RejectCounts) -> dict[str, Any]:
        """This stage's figures for summary.json, read back from what the run wrote (its rejects counted once)."""
        return {}


class BatchStage(Stage):
    """A stage that takes records a batch at a time: `process` is its one hook."""

    batch_size: int = 256  # records per `process` call

    def process(self, batch: list[Record]) -> list[Record | Reject]:
        """Each record of `batch`, changed, or its Reject, in order (after `setup`)."""
        raise NotImplementedError

    def stream(self, progress: Progress) -> StageStream:
        return Batches(self, progress)


class Batches(StageStream):
    """A batch stage as a stream: `batch_size` records at a time through `process`."""

    def __init__(self, stage: BatchStage, progress: Progress):
        self.stage, self.progress = stage, progress
        self._batch: list[Record] = []

    def push(self, record: Record) -> list[Record | Reject]:
        self._batch.append(record)
        return self._process() if len(self._batch) >= self.stage.batch_size else []

    def finish(self) -> Iterator[Record | Reject]:
        yield from self._process()

    def _process(self) -> list[Record | Reject]:
        batch, self._batch = self._batch, []
        if not batch:
            return []
        results = self.stage.process(batch)
        self.progress.update(len(batch))
        return results

