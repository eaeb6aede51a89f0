"""Text deduplication (tpt.dedup) as datatrove steps: its four steps split over three jobs by two shuffles.

    job prepare   (tasks over ids)      GatherById -> ApplyStage(truncate) -> Sign
    job buckets   (tasks over buckets)  VerifyBuckets
    job clusters  (one task)            Cluster
    job stages    (tasks over ids)      ApplyDedup -> ApplyStage(classify) -> ...

A prepare task spills what it hands on (records and rejects) to a file of its own,
OUT/.datatrove/shuffle/spill/part-RRRRR.jsonl, and writes each record's bucket
entries to the file of the bucket task that owns the bucket,
shuffle/buckets/part-BBBBB/prepare-RRRRR.jsonl: one line per document and
bucket task, its buckets there, its member and its signature said once. A bucket task writes its
verified edges, shuffle/edges/part-BBBBB.jsonl; the one clusters task reads
them all, a line at a time (the only thing gathered in one place), and writes,
as it decides them, the duplicates among each stage task's ids:
shuffle/duplicates/part-RRRRR.jsonl (none for a task without any).
A stage task reads its spill back and applies them. With `reuse` and a think
stage, the stage task of a kept record also reads its copies from the other
tasks' spills, by their place there, so each cluster is thought once, in one
task. Every file is rewritten whole by a retried task, so nothing is written twice.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Iterator

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from tpt.dedup import EXACT, Deduplication, Duplicate, Edge, Member, decide
from tpt.engines.datatrove.documents import dumps, from_document, is_reject, to_document
from tpt.engines.datatrove.shuffle import PartFiles, rows_for
from tpt.io.jsonlines import JsonLinesStore, Location
from tpt.io.output import part_name, part_of
from tpt.io.storage import Folder
from tpt.progress import Progress
from tpt.run.failures import writing

SPILL, BUCKETS, EDGES, DUPLICATES = "spill", "buckets", "edges", "duplicates"


class Sign(PipelineStep):
    """Spill this task's documents, and send each record's bucket entries to the bucket task that owns the bucket."""

    name = "deduplicate: sign"
    type = "tpt dedup"

    def __init__(self, dedup: Deduplication, shuffle: str, tasks: int, beacons: str):
        super().__init__()
        self.dedup, self.shuffle, self.tasks, self.beacons = dedup, shuffle, tasks, beacons

    def run(self, data, rank: int = 0, world_size: int = 1) -> None:
        shuffle, spilled = Folder(self.shuffle), 0
        spill_name = f"{part_name(rank)}.jsonl"
        progress = Progress(self.dedup.name, beacons=self.beacons)
        with (writing(shuffle.url_of(f"{BUCKETS}/*/prepare-{rank:05d}.jsonl")),
              shuffle.staged_file(f"{SPILL}/{spill_name}") as local, open(local, "wb") as spill,
              PartFiles(shuffle, lambda part: f"{BUCKETS}/{part}/prepare-{rank:05d}.jsonl") as files):
            for document in data:
                line = (dumps(document) + "\n").encode()
                where, spilled = Location(spill_name, spilled, len(line)), spilled + len(line)
                spill.write(line)
                if is_reject(document):
                    continue
                signed, by_part = self.dedup.sign(from_document(document), where), defaultdict(list)
                for bucket in signed.buckets:
                    by_part[part_of(bucket, self.tasks)].append(bucket)
                for part, buckets in by_part.items():  # one line per document and bucket task: the member said once
                    files.write(part, json.dumps([buckets, _member(signed.member), _signature(signed.signature)]) + "\n")
                progress.update(1)
                self.stat_update("signed")
        progress.done()


class VerifyBuckets(PipelineStep):
    """The entries addressed to this task, grouped by bucket; each bucket's verified edges to one file."""

    name = "deduplicate: buckets"
    type = "tpt dedup"

    def __init__(self, dedup: Deduplication, shuffle: str):
        super().__init__()
        self.dedup, self.shuffle = dedup, shuffle

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> None:
        shuffle, buckets = Folder(self.shuffle), defaultdict(list)
        for keys, member, signature in rows_for(shuffle, f"{BUCKETS}/{part_name(rank)}/prepare-*.jsonl"):
            member, signature = _read_member(member), _read_signature(signature)
            for bucket in keys:
                buckets[bucket].append((member, signature if not bucket.startswith(EXACT) else None))
        lines = [json.dumps([_member(edge.a), _member(edge.b), edge.similarity]) + "\n"
                 for bucket in sorted(buckets) for edge in self.dedup.edges(bucket, buckets[bucket])]
        self.stat_update("edges", value=len(lines))
        with writing(shuffle.url_of(f"{EDGES}/{part_name(rank)}.jsonl")):
            shuffle.write_text(f"{EDGES}/{part_name(rank)}.jsonl", "".join(lines))


class Cluster(PipelineStep):
    """Every edge of the run, in this one task: union-find, and each stage task's duplicates to its own file."""

    name = "deduplicate: clusters"
    type = "tpt dedup"

    def __init__(self, dedup: Deduplication, shuffle: str, tasks: int):
        super().__init__()
        self.dedup, self.shuffle, self.tasks = dedup, shuffle, tasks

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> None:
        shuffle = Folder(self.shuffle)
        edges = (Edge(_read_member(a), _read_member(b), similarity)
                 for a, b, similarity in rows_for(shuffle, f"{EDGES}/part-*.jsonl"))
        with (writing(shuffle.url_of(f"{DUPLICATES}/*.jsonl")),
              PartFiles(shuffle, lambda part: f"{DUPLICATES}/{part}.jsonl") as files):
            for duplicate in decide(edges):
                line = json.dumps([_member(duplicate.member), _member(duplicate.kept), *duplicate[2:]]) + "\n"
                owner, keeper = part_of(duplicate.member.id, self.tasks), part_of(duplicate.kept.id, self.tasks)
                files.write(owner, line)
                if self.dedup.attach_copies and keeper != owner:  # the kept record's task reads the copy too
                    files.write(keeper, line)
                self.stat_update(duplicate.kind)


class ApplyDedup(PipelineStep):
    """This task's spilled documents with their duplicates applied: set aside (drop), marked, or carried as copies."""

    name = "deduplicate"
    type = "tpt dedup"

    def __init__(self, dedup: Deduplication, shuffle: str):
        super().__init__()
        self.dedup, self.shuffle = dedup, shuffle

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator:
        shuffle, spill = Folder(self.shuffle), _spill(self.shuffle)
        mine: dict[str, Duplicate] = {}
        copies: defaultdict[str, list[Duplicate]] = defaultdict(list)
        for fields in rows_for(shuffle, f"{DUPLICATES}/{part_name(rank)}.jsonl"):  # none: a task without duplicates
            duplicate = _read_duplicate(fields)
            if part_of(duplicate.member.id, world_size) == rank:
                mine[duplicate.member.id] = duplicate
            if self.dedup.attach_copies and part_of(duplicate.kept.id, world_size) == rank:
                copies[duplicate.kept.id].append(duplicate)
        for _, entry in spill.scan(part_name(rank)):
            document = Document(**entry)
            if is_reject(document):
                yield document
                continue
            record = from_document(document)
            duplicate = mine.get(record.id)
            if duplicate is not None and self.dedup.attach_copies:
                continue  # the kept record's task writes it, with the kept thinking
            item = self.dedup.apply(record, duplicate)
            if record.id in copies:
                item = item.replace(copies=self._copies(spill, copies[record.id]))
            self.stat_update(getattr(item, "reason", "kept"))
            yield to_document(item)

    def _copies(self, spill: JsonLinesStore, duplicates: list[Duplicate]) -> list:
        """The copies of a kept record, read from the spill files they lie in, marked as copies."""
        duplicates = sorted(duplicates, key=lambda duplicate: duplicate.member.id)
        entries = spill.fetch([duplicate.member.where for duplicate in duplicates])
        return [self.dedup.apply(from_document(Document(**entry)), duplicate) for entry, duplicate in zip(entries, duplicates)]


def _spill(shuffle: str) -> JsonLinesStore:
    return JsonLinesStore(Folder(shuffle).url_of(SPILL))


def _member(member: Member) -> list:
    return [*member[:4], list(member.where) if member.where is not None else None]


def _read_member(fields: list) -> Member:
    *head, where = fields
    return Member(*head, Location(*where) if where is not None else None)


def _signature(signature: bytes | None) -> str | None:
    return base64.b64encode(signature).decode() if signature is not None else None


def _read_signature(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text is not None else None


def _read_duplicate(fields: list) -> Duplicate:
    member, kept, *rest = fields
    return Duplicate(_read_member(member), _read_member(kept), *rest)
