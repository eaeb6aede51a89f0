"""What every stage is: a small object over batches of records.

Engines construct a stage in the driver (it must pickle: configuration only),
call `setup()` once per worker process to load tokenizers or models, then
`process()` on batches. A stage returns each record it keeps, changed, and a
`Reject` for each it sets aside; it never drops one. Engines count a stage's
progress per batch, unless it has `own_progress = True` and counts finer itself.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from tpt.schema import Record, Reject


class Stage(Protocol):
    name: ClassVar[str]
    adds: ClassVar[tuple[str, ...]]  # the record fields this stage fills in
    batch_size: int  # records per `process` call

    def setup(self) -> None: ...

    def process(self, batch: list[Record]) -> list[Record | Reject]: ...
