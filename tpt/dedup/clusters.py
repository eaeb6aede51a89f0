"""From LSH buckets to clusters of duplicates, and which copy of each cluster is kept.

A bucket holds the documents that share a key: the same digest (exact), or
the same band of their MinHash signatures (near). `exact_edges` and
`near_edges` give the edges a bucket's clusters need, a near pair verified by
its estimated Jaccard; `decide` joins every edge of the run into clusters by
union-find and names, for every document but one per cluster, the copy kept
in its place.

The kept copy is the same on every engine, worker count and rerun: the copy
from the source of highest weight, then the smallest id (`Member.rank`).
Clusters are transitive: A like B and B like C puts A, B and C in one cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np

DUPLICATE_TEXT = "duplicate_text"  # the same text after normalisation
NEAR_DUPLICATE = "near_duplicate"  # a verified near copy (or one linked to the kept copy through near copies)
PAIRWISE = 1000  # each document of a bucket is compared with (at most) this many before it, by rank


class Member(NamedTuple):
    """A document as deduplication sees it: who it is, how it ranks, and where an engine finds it again."""

    id: str
    source: str
    weight: float  # its source's weight
    digest: str  # the hash of its normalised text
    where: Any = None  # engine-specific: where the record can be read back (datatrove: its place in a spill file)

    @property
    def rank(self) -> tuple[float, str]:
        """Lower is kept: the heaviest source first, then the smallest id."""
        return -self.weight, self.id


class Edge(NamedTuple):
    """Two documents found to be duplicates, and their estimated Jaccard similarity."""

    a: Member
    b: Member
    similarity: float


class Duplicate(NamedTuple):
    """A document that is not kept: the copy kept in its place, what kind of copy it is, and how similar."""

    member: Member
    kept: Member
    kind: str  # DUPLICATE_TEXT or NEAR_DUPLICATE
    similarity: float  # the estimated Jaccard similarity with `neighbour` (1.0 for the same text)
    neighbour: str  # the id of the document it was found similar to: the kept one where they were compared


def exact_edges(members: list[Member]) -> list[Edge]:
    """A bucket of one digest: every member is a duplicate of the first by rank."""
    first, *others = sorted(members, key=Member.rank.fget)
    return [Edge(first, other, 1.0) for other in others]


def near_edges(entries: list[tuple[Member, bytes]], threshold: float, one_per_digest: bool) -> list[Edge]:
    """A band's bucket: the pairs whose estimated Jaccard reaches `threshold` (signatures as the bytes of their
    uint32 values), as many as its clusters need. Each member is compared with those before it by rank and
    linked to the first it is like in each group of them already linked together: the bucket's clusters are the
    same as with every such pair, and a bucket of a million near copies gives a million edges, not a billion.
    With `one_per_digest` (exact deduplication links same-text copies already), one member per digest takes part."""
    entries = sorted(entries, key=lambda entry: entry[0].rank)
    if one_per_digest:  # the first by rank of each digest, in rank order
        firsts: dict[str, tuple[Member, bytes]] = {}
        for member, signature in entries:
            firsts.setdefault(member.digest, (member, signature))
        entries = list(firsts.values())
    if len(entries) < 2:
        return []
    signatures = np.frombuffer(b"".join(signature for _, signature in entries), dtype=np.uint32).reshape(len(entries), -1)
    group = np.arange(min(len(entries), PAIRWISE))  # of each member others are compared with: those linked share one
    edges = []
    for i in range(1, len(entries)):
        similarities = np.count_nonzero(signatures[:min(i, PAIRWISE)] == signatures[i], axis=1) / signatures.shape[1]
        like = np.flatnonzero(similarities >= threshold)  # in rank order
        if not like.size:
            continue
        groups, first = np.unique(group[like], return_index=True)
        edges.extend(Edge(entries[j][0], entries[i][0], float(similarities[j])) for j in like[first])
        joined = group[like[0]]  # the groups `i` is like are one group now, and `i` is in it
        group[np.isin(group, groups)] = joined
        if i < group.size:
            group[i] = joined
    return edges


def decide(edges: Iterable[Edge]) -> Iterator[Duplicate]:
    """Union-find over every verified edge of the run: each member of a cluster but its kept copy, as a Duplicate."""
    clusters = Clusters()
    for edge in edges:
        clusters.add(edge)
    return clusters.duplicates()


class Clusters:
    """Union-find over edges taken one at a time, or merged from several places (a Beam combiner's partial results):
    what it holds is the edges' members and each pair once, never a document's signature or text, nor an edge
    twice (every band of two near copies finds them)."""

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.parent: dict[str, str] = {}
        self.pairs: dict[tuple[str, str], float] = {}
        self.closest: dict[str, tuple[float, str]] = {}  # each member's most similar neighbour, ties to the smallest id

    def add(self, edge: Edge) -> None:
        a, b, score = edge
        for member in (a, b):
            if member.id not in self.members:
                self.members[member.id], self.parent[member.id] = member, member.id
        self.pairs[min(a.id, b.id), max(a.id, b.id)] = score
        for one, other in ((a, b), (b, a)):
            best = self.closest.get(one.id)
            if best is None or score > best[0] or score == best[0] and other.id < best[1]:
                self.closest[one.id] = (score, other.id)
        ra, rb = self._root(a.id), self._root(b.id)
        if ra != rb:
            low, high = sorted((ra, rb), key=lambda node: self.members[node].rank)
            self.parent[high] = low

    def merge(self, other: Clusters) -> None:
        """Take in every edge `other` was given."""
        for (a, b), score in other.pairs.items():
            self.add(Edge(other.members[a], other.members[b], score))

    def duplicates(self) -> Iterator[Duplicate]:
        """Each member of a cluster but its kept copy (the root: the best by rank), by id."""
        for node, member in sorted(self.members.items()):
            kept = self.members[self._root(node)]
            if kept.id == node:
                continue
            if member.digest == kept.digest:
                yield Duplicate(member, kept, DUPLICATE_TEXT, 1.0, kept.id)
            elif (score := self.pairs.get((min(node, kept.id), max(node, kept.id)))) is not None:
                yield Duplicate(member, kept, NEAR_DUPLICATE, score, kept.id)
            else:
                yield Duplicate(member, kept, NEAR_DUPLICATE, *self.closest[node])

    def _root(self, node: str) -> str:
        parent = self.parent
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node
