"""What every stage is, and the one lifecycle both engines honour.

Engines construct a stage in the driver (it must pickle: configuration only),
call `check()` there before anything is written (a missing template or an
unreachable server stops the run while the previous run's outputs are still
whole), and then, in each worker process:

- `setup()` once, to load tokenizers or models or open connections;
- `stream(progress)` for each bundle or task: a `StageStream` that takes records
  one at a time (`push`) and hands back whatever is finished, then everything
  left (`finish`). A plain stage processes `batch_size` records at a time; a
  stage that keeps a window of work in flight (think) streams for real;
- `close()` at teardown, to release what `setup` took;
- `report(layout)` in the driver once the run is written, for summary.json.

A stage returns each record it keeps, changed, and a `Reject` for each it sets
aside; it never drops one. It counts its own progress on the `Progress` given.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from tpt.schema import Record, Reject, stage_fields

if TYPE_CHECKING:
    from tpt.io.output import OutputLayout
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
    batch_size: int = 256  # records per `process` call

    @property
    def adds(self) -> tuple[str, ...]:
        """The record fields this stage fills in (declared in tpt.schema)."""
        return stage_fields(self.name)

    def check(self) -> None:
        """In the driver, before the run writes anything: fail now, with a clear error, on what would fail later."""

    def setup(self) -> None:
        """Load what the stage needs, once per worker process; repeat calls do nothing."""

    def process(self, batch: list[Record]) -> list[Record | Reject]:
        raise NotImplementedError

    def stream(self, progress: Progress) -> StageStream:
        return Batches(self, progress)

    def close(self) -> None:
        """Release what `setup` took; the stage can be set up again afterwards."""

    def report(self, layout: OutputLayout) -> dict[str, Any]:
        """This stage's figures for summary.json, read back from what the run wrote."""
        return {}


class Batches(StageStream):
    """A plain stage as a stream: `batch_size` records at a time through `process`."""

    def __init__(self, stage: Stage, progress: Progress):
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

