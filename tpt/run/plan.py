"""What a run is, whatever engine runs it: built once from the config, before any output is touched.

An engine maps the plan onto its runner: it reads `files`, keeps one
record per id, sends each record through `before_dedup` (truncate), then `dedup`
(tpt.dedup: its four steps, with the engine's shuffles between them), then
`after_dedup` (classify, think; each stage by its streaming lifecycle,
tpt.stages.base), writes parts with `write_part` / `write_rejects`, and ends
with `finalize`. Adding a stage touches no engine; adding an engine is one
module of tpt.engines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tpt.config import PipelineConfig
from tpt.dedup import Deduplication
from tpt.io.lock import RunLock
from tpt.io.output import OutputLayout, write_part, write_rejects
from tpt.io.owned import check_owned, mark
from tpt.io.publish import STAGING, recover, staged
from tpt.io.read import list_inputs
from tpt.progress import BEACONS, RunProgress, track_run
from tpt.run.failures import writing
from tpt.schema import Record, Reject
from tpt.stages import build_stages, output_fields
from tpt.stages.base import Stage

DEDUP_AFTER = 1  # stages before text deduplication: truncate
RUN = "tpt run"  # the owner of a run's output folder (tpt.io.owned)


@dataclass
class RunPlan:
    config: PipelineConfig  # output.dir absolute: workers may start elsewhere
    layout: OutputLayout  # where the run publishes its outputs
    files: list[tuple[str, str]]  # (source, path) of every input file
    stages: list[Stage]  # between read and write, in order
    fields: list[str]  # the record fields the shards store
    dedup: Deduplication | None = None  # text deduplication, after truncate (`dedup.exact`, `dedup.near`)

    @classmethod
    def build(cls, config: PipelineConfig, check: bool = True) -> RunPlan:
        """Plan the run; with `check`, everything that can be checked is, before anything is written
        (input formats and files on listing, the config on loading, then each stage: models, servers)."""
        if not config.output.dir:
            raise ValueError("no output folder: pass --output or set output.dir in the config")
        layout = OutputLayout(config.output.dir)
        check_owned(layout, RUN, written_before_markers=_run_before_markers)  # before anything is read or written
        config = config.with_output_dir(layout.url)
        files = list_inputs(config.sources)
        stages = build_stages(config)
        if check:
            for stage in stages:
                stage.check()
        weights = {source.name: source.weight for source in config.sources}
        dedup = Deduplication(config.dedup, weights, thinks=config.generate is not None) if config.dedup.enabled else None
        return cls(config, layout, files, stages, output_fields(config, stages), dedup)

    @property
    def before_dedup(self) -> list[Stage]:
        """The stages before text deduplication: truncate (it compares what the teacher reads); every stage without it."""
        return self.stages[:DEDUP_AFTER] if self.dedup else self.stages

    @property
    def after_dedup(self) -> list[Stage]:
        return self.stages[DEDUP_AFTER:] if self.dedup else []

    @property
    def reporting(self) -> list:
        """What reports its figures in summary.json, in pipeline order."""
        return [*self.before_dedup, *([self.dedup] if self.dedup else []), *self.after_dedup]

    @property
    def staging(self) -> OutputLayout:
        """Where the run writes until it publishes (tpt.io.publish)."""
        return staged(self.layout)

    @property
    def beacons(self) -> str:
        """Where each worker leaves its counts, for the run's progress line."""
        return self.layout.url_of(BEACONS)

    def lock(self) -> RunLock:
        return RunLock(self.layout)

    def recover(self) -> None:
        """Complete a publish an earlier run was killed in (tpt.io.publish)."""
        recover(self.layout)

    def start_afresh(self) -> None:
        """Recover, then drop what a failed run staged (the previous run's published outputs stay until this
        one publishes; OUT/thinking/ keeps its results)."""
        self.recover()
        self.layout.remove(STAGING)
        mark(self.layout, RUN)

    def progress(self) -> RunProgress:
        return track_run(self.config, [stage.name for stage in self.reporting], self.files)

    def write_part(self, source: str, part: str, records: Iterable[Record]) -> int:
        with writing(self.staging.url_of(f"{self.staging.mds}/{source}/{part}")):
            return write_part(self.staging, source, part, records, self.fields, self.config.output)

    def write_rejects(self, source: str, part: str, rejects: Iterable[Reject]) -> int:
        with writing(self.staging.url_of(f"{self.staging.rejects}/{source}/{part}.jsonl")):
            return write_rejects(self.staging, source, part, rejects)

    def finalize(self, wall_seconds: float, engine: dict[str, Any]) -> dict[str, Any]:
        """Merge, summarise and publish the finished run; safe to repeat. Returns the summary."""
        from tpt.io.finalize import finalize  # here: every worker unpickles the plan, none finalizes

        return finalize(self.layout, self.config, self.reporting, wall_seconds, engine)


def _run_before_markers(layout: OutputLayout) -> bool:
    """A run folder an older tpt wrote: a finished run's summary, or a run's staging folder."""
    try:
        return "schema_version" in layout.read_json(layout.summary)
    except (OSError, ValueError, TypeError):
        return layout.exists(STAGING)
