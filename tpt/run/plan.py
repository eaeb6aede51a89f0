"""What a run is, whatever engine runs it: built once from the config, before any output is touched.

An engine adapter maps the plan onto its runner: it reads `files`, sends each
record through `stages` (by their streaming lifecycle, tpt.stages.base), writes
parts with `write_part` / `write_rejects`, and ends with `finalize`. Adding a
stage touches no engine; adding an engine is one adapter module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tpt.config import PipelineConfig
from tpt.io.output import OutputLayout, write_part, write_rejects
from tpt.io.lock import RunLock
from tpt.io.publish import STAGING, recover, staged
from tpt.io.read import list_inputs
from tpt.progress import BEACONS, RunProgress, track_run
from tpt.run.failures import writing
from tpt.schema import Record, Reject
from tpt.stages import build_stages, output_fields
from tpt.stages.base import Stage


@dataclass
class RunPlan:
    config: PipelineConfig  # output.dir absolute: workers may start elsewhere
    layout: OutputLayout  # where the run publishes its outputs
    files: list[tuple[str, str]]  # (source, path) of every input file
    stages: list[Stage]  # between read and write, in order
    fields: list[str]  # the record fields the shards store

    @classmethod
    def build(cls, config: PipelineConfig, check: bool = True) -> RunPlan:
        """Plan the run; with `check`, everything that can be checked is, before anything is written
        (input formats and files on listing, the config on loading, then each stage: models, servers)."""
        if not config.output.dir:
            raise ValueError("no output folder: pass --output or set output.dir in the config")
        layout = OutputLayout(config.output.dir)
        config = config.with_output_dir(layout.url)
        files = list_inputs(config.sources)
        stages = build_stages(config)
        if check:
            for stage in stages:
                stage.check()
        return cls(config, layout, files, stages, output_fields(config, stages))

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

    def progress(self) -> RunProgress:
        return track_run(self.config, self.stages, self.files)

    def write_part(self, source: str, part: str, records: Iterable[Record]) -> int:
        with writing(self.staging.url_of(f"{self.staging.mds}/{source}/{part}")):
            return write_part(self.staging, source, part, records, self.fields, self.config.output)

    def write_rejects(self, source: str, part: str, rejects: Iterable[Reject]) -> int:
        with writing(self.staging.url_of(f"{self.staging.rejects}/{source}/{part}.jsonl")):
            return write_rejects(self.staging, source, part, rejects)

    def finalize(self, wall_seconds: float, engine: dict[str, Any]) -> dict[str, Any]:
        """Merge, summarise and publish the finished run; safe to repeat. Returns the summary."""
        from tpt.io.finalize import finalize  # here: every worker unpickles the plan, none finalizes

        return finalize(self.layout, self.config, self.stages, wall_seconds, engine)
