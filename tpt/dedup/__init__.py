"""Deduplication: the teacher is asked once per distinct text, whatever the id, source or copy.

Three kinds of duplicates are found across every source:

- the same id (`ids.keep_one`), before truncation: one document per id;
- the same text (`dedup.exact`): the truncated text, normalised and hashed;
- nearly the same text (`dedup.near`): MinHash signatures of the truncated text's
  word n-grams, banded for LSH; candidate pairs verified by their estimated
  Jaccard similarity, clusters formed by union-find (`clusters`).

Text deduplication runs after truncate, on what the teacher reads, and before
classify and think. An engine runs it in four steps, with its own shuffle between them:

    1. sign      (every worker)      a record -> its `Member`, signature and buckets (`Deduplication.sign`)
    2. buckets   (grouped by bucket) the entries of one bucket -> verified edges (`Deduplication.edges`)
    3. clusters  (one place)         every edge of the run -> a `Duplicate` per copy not kept (`Clusters`, `decide`)
    4. apply     (grouped by id)     a record and its Duplicate, if any -> `Deduplication.apply`

Only the edges are gathered in one place (the members they name, never a
signature or a text). With `dedup.duplicates: drop` a copy not kept is a reject
(`duplicate_text` or `near_duplicate`, naming the kept id and the similarity);
with `reuse` it is written with the kept copy's thinking: it travels to the
think stage with its kept record (`Record.copies`), and the teacher is asked
once per cluster either way.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, NamedTuple

from tpt.config import DedupConfig
from tpt.dedup.clusters import DUPLICATE_TEXT, NEAR_DUPLICATE, Clusters, Duplicate, Edge, Member, decide, exact_edges, near_edges
from tpt.dedup.ids import STAGE
from tpt.dedup.signature import Signer, digest
from tpt.io.output import OutputLayout, RejectCounts
from tpt.schema import COLUMNS, Record, Reject

__all__ = ["DUPLICATE_TEXT", "EXACT", "NEAR_DUPLICATE", "STAGE", "Clusters", "Deduplication", "Duplicate", "Edge", "Member",
           "Signed", "decide", "with_kept_fields"]

EXACT = "exact:"  # the bucket key of a digest; a band's key starts with its number
OWN = ("read", "truncate", STAGE)  # the stages whose fields a copy keeps as its own

Entry = tuple[Member, "bytes | None"]  # a member of a bucket, with its signature (uint32 values) in a band's bucket


class Signed(NamedTuple):
    """What step 1 makes of a record: who it is, its MinHash signature, and the buckets it goes to."""

    member: Member
    signature: bytes | None  # the uint32 values; None without near detection, or for a text without words
    buckets: list[str]  # its digest's (exact detection), then one per LSH band (near detection)

    def entries(self) -> list[tuple[str, Entry]]:
        """One (bucket, entry) pair per bucket, as a shuffle by bucket takes them: the signature in a band's bucket."""
        return [(bucket, (self.member, None if bucket.startswith(EXACT) else self.signature)) for bucket in self.buckets]


def with_kept_fields(copy: Record, kept: Record) -> Record:
    """A copy with every field the stages after deduplication gave its kept record: its labels, its thinking."""
    return copy.replace(**{name: getattr(kept, name) for name, column in COLUMNS.items() if column.stage not in OWN})


class Deduplication:
    """Text deduplication as a run's config asks for it, with the steps an engine calls (see the module)."""

    name = STAGE

    def __init__(self, config: DedupConfig, weights: dict[str, float], thinks: bool):
        self.config = config
        self.weights = weights  # each source's weight: its copy of a cluster wins over a lighter source's
        # reuse with a think stage: a copy travels with its kept record; without one it is written as it is, marked
        self.attach_copies = config.duplicates == "reuse" and thinks
        self._signer = Signer(config.minhash)

    @property
    def worker_modules(self) -> tuple[str, ...]:
        """What a worker imports to sign (seconds: datasketch imports scipy), for an engine to load once before it forks."""
        return ("datasketch",) if self.config.near else ()

    def member(self, record: Record, where: Any = None) -> Member:
        return Member(record.id, record.source, self.weights[record.source], digest(record.text, self.config.normalize), where)

    def sign(self, record: Record, where: Any = None) -> Signed:
        """Step 1: a record's member, signature and buckets: its digest's bucket, and one bucket per LSH band."""
        member = self.member(record, where)
        buckets = [EXACT + member.digest] if self.config.exact else []
        signature = self._signer.signature(record.text) if self.config.near else None
        if signature is not None:
            buckets += self._signer.bands(signature)
        return Signed(member, None if signature is None else signature.tobytes(), buckets)

    def edges(self, bucket: str, entries: list[Entry]) -> list[Edge]:
        """Step 2: the verified duplicate pairs among the entries of one bucket."""
        if len(entries) < 2:
            return []
        if bucket.startswith(EXACT):
            return exact_edges([member for member, _ in entries])
        return near_edges(entries, self.config.minhash.jaccard_threshold, one_per_digest=self.config.exact)

    def apply(self, record: Record, duplicate: Duplicate | None) -> Record | Reject:
        """Step 4: a record as it leaves deduplication: itself, set aside (drop), or marked as a copy (reuse)."""
        if duplicate is None:
            return record
        kept = duplicate.kept
        if self.config.duplicates == "drop":
            said = "the same text as" if duplicate.kind == DUPLICATE_TEXT else "a near copy of"
            also = "" if duplicate.neighbour == kept.id else f", by way of {duplicate.neighbour!r}"
            detail = (f"{said} {kept.id!r} of source {kept.source!r}, which is kept "
                      f"(estimated Jaccard {duplicate.similarity:.3f}{also})")
            return Reject.of(record, STAGE, duplicate.kind, detail, duplicate_of=kept.id, similarity=duplicate.similarity)
        return record.replace(duplicate_of=kept.id, duplicate_kind=duplicate.kind, duplicate_similarity=duplicate.similarity)

    def report(self, layout: OutputLayout, rejects: RejectCounts) -> dict[str, Any]:
        """For summary.json: duplicates per source and kind, the clusters and the largest, from what the run wrote."""
        duplicates: defaultdict[str, Counter] = defaultdict(Counter)
        for (source, stage, reason), count in rejects.reasons.items():
            if stage == STAGE:
                duplicates[source][reason] += count
        kept_ids = Counter(rejects.copies[STAGE])  # drop: the copies set aside, by kept id
        if layout.exists(layout.manifest):  # reuse: the copies written, one row per sample
            import pyarrow.compute as pc

            written = layout.read_parquet(layout.manifest, columns=["source", "duplicate_of", "duplicate_kind"])
            for row in written.filter(pc.is_valid(written.column("duplicate_of"))).to_pylist():
                duplicates[row["source"]][row["duplicate_kind"]] += 1
                kept_ids[row["duplicate_of"]] += 1
        return {
            "duplicates": self.config.duplicates,
            "duplicates_per_source": {source: dict(sorted(kinds.items())) for source, kinds in sorted(duplicates.items())},
            "clusters": len(kept_ids),
            "largest_cluster": 1 + max(kept_ids.values()) if kept_ids else 0,
        }
