"""The tpt stages as Beam transforms: each adapts one piece of the core and adds nothing of its own."""

from __future__ import annotations

import atexit
import gc
import secrets
import sys
import threading
from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindows

from tpt.config import SourceConfig
from tpt.dedup import Clusters, Deduplication, Duplicate, Edge, Member
from tpt.dedup.ids import keep_one
from tpt.io.output import part_name, part_of
from tpt.io.read import read_file
from tpt.progress import Progress
from tpt.run.plan import RunPlan
from tpt.schema import Record, Reject
from tpt.stages.base import Stage

REJECTS = "rejects"
ENTRIES = "entries"


def route(item: Record | Reject):
    """A stage's output to the main `records` output, or to `rejects`."""
    return pvalue.TaggedOutput(REJECTS, item) if isinstance(item, Reject) else item


class ReadFiles(beam.DoFn):
    """(source name, file path) -> the file's records; bad rows to the rejects output."""

    def __init__(self, sources: list[SourceConfig], max_doc_bytes: int, beacons: str):
        self.sources = {s.name: s for s in sources}
        self.max_doc_bytes = max_doc_bytes
        self.beacons = beacons

    def setup(self) -> None:
        self.progress = Progress("read", beacons=self.beacons)

    def process(self, element: tuple[str, str]) -> Iterator:
        name, path = element
        for item in read_file(self.sources[name], path, self.max_doc_bytes, on_bytes=lambda n: self.progress.update(0, bytes_read=n)):
            self.progress.update(1)
            yield route(item)

    def teardown(self) -> None:
        self.progress.done()


class _StageFn(beam.DoFn):
    """A core stage's stream over a bundle: records pushed as they come, the rest handed on when the bundle ends.

    The stage is set up once per worker process and shared by the threads that run its bundles (a teacher
    model is loaded once); the last of them to tear down closes it.
    """

    def __init__(self, stage: Stage, beacons: str):
        self.stage = stage
        self.beacons = beacons
        self.tag = secrets.token_hex(8)  # one shared stage per transform and process

    def setup(self) -> None:
        self.stage = _SHARED.acquire(self.tag, self.stage)
        self.progress = Progress(self.stage.name, beacons=self.beacons)

    def start_bundle(self) -> None:
        self.stream = self.stage.stream(self.progress)

    def process(self, record: Record) -> Iterator:
        for item in self.stream.push(record):
            yield route(item)

    def finish_bundle(self) -> Iterator:
        for item in self.stream.finish():  # outside `process`, Beam wants each output with its window
            value = GlobalWindows.windowed_value(item)
            yield pvalue.TaggedOutput(REJECTS, value) if isinstance(item, Reject) else value

    def teardown(self) -> None:
        self.progress.done()
        _SHARED.release(self.tag)


class _SharedStages:
    """Set-up stages by tag, each with the number of DoFn instances in this process that use it.

    Beam drops a DoFn whose bundle failed without tearing it down, so whatever is still set up when the
    process exits is closed then (a store flushed, a session closed): the exit hook comes with the first stage.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._stages: dict[str, list] = {}
        self._at_exit = False

    def close_all(self) -> None:
        with self._lock:
            stages, self._stages = self._stages, {}
        for stage, _ in stages.values():
            stage.close()

    def acquire(self, tag: str, stage: Stage) -> Stage:
        with self._lock:
            if tag not in self._stages:
                stage.setup()
                freeze_in_worker()
                self._stages[tag] = [stage, 0]
                if not self._at_exit:
                    atexit.register(self.close_all)
                    self._at_exit = True
            self._stages[tag][1] += 1
            return self._stages[tag][0]

    def release(self, tag: str) -> None:
        with self._lock:
            entry = self._stages.get(tag)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del self._stages[tag]
                entry[0].close()


_SHARED = _SharedStages()

BEAM_WORKER = "apache_beam.runners.worker.sdk_worker_main"


def freeze_in_worker() -> None:
    """In a process Beam started as a worker, leave what is loaded by now (modules, a stage's model) out of the
    cyclic garbage collector's sweeps: at exit it would spend a second sweeping them, and the runner stops its
    workers one after another. A run in the caller's own process is left as it is."""
    main = sys.modules["__main__"]
    if getattr(getattr(main, "__spec__", None), "name", None) == BEAM_WORKER:
        gc.freeze()


class ApplyStage(beam.PTransform):
    """Run a core stage's stream over the records; outputs `records` and `rejects`."""

    def __init__(self, stage: Stage, beacons: str):
        super().__init__()
        self.stage = stage
        self.beacons = beacons

    def expand(self, records):
        return records | "Process" >> beam.ParDo(_StageFn(self.stage, self.beacons)).with_outputs(REJECTS, main="records")


class KeepOnePerId(beam.PTransform):
    """One record per id across all sources; outputs `records` and `rejects`."""

    def expand(self, records):
        return (
            records
            | "KeyById" >> beam.Map(lambda r: (r.id, r))
            | "GroupById" >> beam.GroupByKey()
            | "KeepOne" >> beam.FlatMap(_keep_one).with_outputs(REJECTS, main="records")
        )


def _keep_one(element: tuple[str, list[Record]]) -> Iterator:
    kept, rejects = keep_one(list(element[1]))
    yield kept
    for reject in rejects:
        yield pvalue.TaggedOutput(REJECTS, reject)


class Deduplicate(beam.PTransform):
    """Text deduplication (tpt.dedup), its steps joined by Beam's shuffles; outputs `records` and `rejects`.

        records -> Sign -> GroupByBucket -> VerifyPairs -> Cluster (one place) -> KeyById
              \\____________________________________________________________________\\-> JoinById -> Apply
    """

    def __init__(self, dedup: Deduplication, beacons: str):
        super().__init__()
        self.dedup = dedup
        self.beacons = beacons

    def expand(self, records):
        dedup = self.dedup
        signed = records | "Sign" >> beam.ParDo(_Sign(dedup, self.beacons)).with_outputs(ENTRIES, main="records")
        duplicates = (
            signed[ENTRIES]
            | "GroupByBucket" >> beam.GroupByKey()
            | "VerifyPairs" >> beam.FlatMapTuple(lambda bucket, entries: dedup.edges(bucket, [(Member(*m), s) for m, s in entries]))
            | "Cluster" >> beam.CombineGlobally(_Cluster())
            | "KeyById" >> beam.FlatMap(lambda duplicates: ((duplicate.member.id, duplicate) for duplicate in duplicates))
        )
        applied = (
            {"record": signed["records"], "duplicate": duplicates}
            | "JoinById" >> beam.CoGroupByKey()
            | "Apply" >> beam.FlatMap(_apply, dedup).with_outputs(REJECTS, main="records")
        )
        if not dedup.attach_copies:
            return applied
        attached = (
            applied["records"]
            | "KeyByKept" >> beam.Map(lambda record: (record.duplicate_of or record.id, record))
            | "GroupByKept" >> beam.GroupByKey()
            | "AttachCopies" >> beam.MapTuple(_attach)
        )
        return {"records": attached, REJECTS: applied[REJECTS]}


class _Cluster(beam.CombineFn):
    """Every edge of the run into one union-find, each worker's share combined first: what reaches the one place
    is each pair once (a pair of near copies is found in every band they share), and the decisions come out."""

    def create_accumulator(self) -> Clusters:
        return Clusters()

    def add_input(self, clusters: Clusters, edge: Edge) -> Clusters:
        clusters.add(edge)
        return clusters

    def merge_accumulators(self, accumulators: Iterable[Clusters]) -> Clusters:
        merged, *others = accumulators
        for clusters in others:
            merged.merge(clusters)
        return merged

    def extract_output(self, clusters: Clusters) -> list[Duplicate]:
        return list(clusters.duplicates())


class _Sign(beam.DoFn):
    """Each record keyed by its id, and its bucket entries to the `entries` output."""

    def __init__(self, dedup: Deduplication, beacons: str):
        self.dedup = dedup
        self.beacons = beacons

    def setup(self) -> None:
        self.progress = Progress(self.dedup.name, beacons=self.beacons)

    def process(self, record: Record) -> Iterator:
        for bucket, (member, signature) in self.dedup.sign(record).entries():  # plain tuples: Beam encodes them without pickle
            yield pvalue.TaggedOutput(ENTRIES, (bucket, (tuple(member), signature)))
        self.progress.update(1)
        yield record.id, record

    def teardown(self) -> None:
        self.progress.done()


def _apply(element: tuple[str, dict[str, list]], dedup: Deduplication) -> Iterator:
    (record,), duplicates = element[1]["record"], element[1]["duplicate"]
    yield route(dedup.apply(record, next(iter(duplicates), None)))


def _attach(kept_id: str, records: list[Record]) -> Record:
    """The kept record of a cluster, carrying its copies to the think stage."""
    kept = next(record for record in records if record.id == kept_id)
    return kept.replace(copies=sorted((record for record in records if record is not kept), key=lambda record: record.id))


class WriteParts(beam.PTransform):
    """Group records (or rejects) into each source's parts and write each part as the plan writes it."""

    def __init__(self, plan: RunPlan, rejects: bool = False):
        super().__init__()
        self.plan, self.rejects = plan, rejects

    def expand(self, items):
        plan, parts = self.plan, self.plan.config.output.parts
        write = plan.write_rejects if self.rejects else plan.write_part
        return (
            items
            | "KeyByPart" >> beam.Map(lambda item: ((item.source, part_name(part_of(item.key, parts))), item))
            | "GroupByPart" >> beam.GroupByKey()
            | "Write" >> beam.MapTuple(lambda key, group: write(*key, group))
        )
