"""The one record schema every stage and both engines share, declared once.

A `Record` starts as (id, source, text) from a reader; each stage fills in the
fields it owns. Each field is declared once, in the dataclass below, with its
Arrow type, its MDS encoding and the stage that fills it; the manifest schema,
the shards' columns and each stage's fields are derived from that declaration,
so adding a field is one edit here. `Reject` is what a stage sets aside.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1
COLUMN = "tpt_column"  # the key of a field's declaration in its dataclass metadata


@dataclass(frozen=True)
class Column:
    """How a record field is stored: its Arrow type (manifest), MDS encoding (shards), and who fills it."""

    arrow: pa.DataType
    mds: str  # a mosaicml-streaming encoding
    stage: str  # the stage that fills it in ("read" for the fields every record starts with)
    manifest: bool = True  # a scalar kept in the manifest; the texts are not
    to_mds: Callable[[Any], Any] | None = None  # the value as the shards store it, where it differs
    from_mds: Callable[[pa.Array], pa.Array] | None = None  # and back, a shard's column at a time


def column(arrow: pa.DataType, mds: str, stage: str, manifest: bool = True, to_mds: Callable[[Any], Any] | None = None,
           from_mds: Callable[[pa.Array], pa.Array] | None = None, **options: Any) -> Any:
    """A dataclass field declared as a stored column (`options`: the field's default, as for `dataclasses.field`)."""
    if not {"default", "default_factory"} & options.keys() and stage != "read":
        options["default"] = None  # a stage's field is unset until the stage runs
    return field(metadata={COLUMN: Column(arrow, mds, stage, manifest, to_mds, from_mds)}, **options)


def _split_flags(column: pa.Array) -> pa.Array:
    """Thinking flags as the shards store them, comma-separated, back to a list."""
    import pyarrow.compute as pc  # here: workers that only write never load it

    return pc.if_else(pc.equal(column, ""), pa.scalar([], pa.list_(pa.string())), pc.split_pattern(column, ","))


@dataclass
class Record:
    """One document and, once generated, its thinking: the sample [d; t]."""

    id: str = column(pa.string(), "str", "read")
    source: str = column(pa.string(), "str", "read")
    # what the model trains on: the document d (truncated once the truncate stage ran), [d; t] once thought
    text: str = column(pa.string(), "str", "read", manifest=False)
    doc_tokens: int | None = column(pa.int32(), "int32", "truncate")  # teacher tokens before truncation
    kept_tokens: int | None = column(pa.int32(), "int32", "truncate")  # teacher tokens of `text` after truncation
    truncated: bool | None = column(pa.bool_(), "uint8", "truncate", to_mds=int)
    domain: str | None = column(pa.string(), "str", "classify")
    domain_score: float | None = column(pa.float32(), "float32", "classify")
    audience: str | None = column(pa.string(), "str", "classify")
    audience_score: float | None = column(pa.float32(), "float32", "classify")
    reasoning: str | None = column(pa.string(), "str", "classify")
    reasoning_score: float | None = column(pa.float32(), "float32", "classify")
    thinking: str | None = column(pa.string(), "str", "think", manifest=False)
    thinking_tokens: int | None = column(pa.int32(), "int32", "think")
    finish_reason: str | None = column(pa.string(), "str", "think")  # "stop" or "length"
    thinking_flags: list[str] = column(pa.list_(pa.string()), "str", "think", to_mds=",".join, from_mds=_split_flags,
                                       default_factory=list)
    sample_tokens: int | None = column(pa.int32(), "int32", "think")  # teacher tokens of the training sample [d; t]
    thinking_budget: int | None = column(pa.int32(), "int32", "think")  # the max_new_tokens it was generated with
    # a duplicate written with its kept copy's thinking (`dedup.duplicates: reuse`): that copy's id, how it is a copy
    duplicate_of: str | None = column(pa.string(), "str", "deduplicate")
    duplicate_kind: str | None = column(pa.string(), "str", "deduplicate")  # "duplicate_text" or "near_duplicate"
    duplicate_similarity: float | None = column(pa.float32(), "float32", "deduplicate")  # estimated Jaccard
    # the duplicates that take this record's thinking, carried to the think stage with it; never stored
    copies: list[Record] = field(default_factory=list, repr=False)

    def replace(self, **changes: Any) -> Record:
        return dataclasses.replace(self, **changes)

    def with_thinking(self, thinking: str, separator: str, **changes: Any) -> Record:
        """The training sample [d; t]: the one place a document and its thinking are joined."""
        return self.replace(text=self.text + separator + thinking, thinking=thinking, **changes)

    @property
    def key(self) -> str:
        """What the record's output part is hashed from (tpt.io.output.part_of)."""
        return self.id


COLUMNS: dict[str, Column] = {f.name: f.metadata[COLUMN] for f in dataclasses.fields(Record) if COLUMN in f.metadata}
BASE_FIELDS = tuple(name for name, c in COLUMNS.items() if c.stage == "read")  # every record has them from the start
SCALAR_FIELDS = tuple(name for name, c in COLUMNS.items() if c.manifest)  # the manifest's columns
MDS_TYPES = {name: c.mds for name, c in COLUMNS.items()}
ARROW_TYPES = {name: c.arrow for name, c in COLUMNS.items()}

MANIFEST_SCHEMA = pa.schema(
    [pa.field(name, COLUMNS[name].arrow) for name in SCALAR_FIELDS],
    metadata={"tpt_schema_version": str(SCHEMA_VERSION)},
)


def stage_fields(stage: str) -> tuple[str, ...]:
    """The record fields `stage` fills in, in schema order."""
    return tuple(name for name, c in COLUMNS.items() if c.stage == stage)


def mds_value(name: str, value: Any) -> Any:
    """A field's value as the shards store it."""
    encode = COLUMNS[name].to_mds
    return value if encode is None else encode(value)


def content_id(source: str, text: str) -> str:
    """A stable id for a document that came without one: a hash of source and text."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(source.encode())
    digest.update(b"\0")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def manifest_table(records: list[Record]) -> pa.Table:
    """The manifest rows (every scalar field, no text) of `records`."""
    columns = {name: [getattr(r, name) for r in records] for name in SCALAR_FIELDS}
    return pa.table(columns, schema=MANIFEST_SCHEMA)


DUPLICATE_FIELDS = ("duplicate_of", "similarity")


@dataclass
class Reject:
    """A record (or raw input) set aside by a stage, with the reason, never dropped silently."""

    source: str
    stage: str
    reason: str  # a short code, e.g. "malformed_json"; summaries count by it
    detail: str  # what was wrong, for a person
    id: str | None = None
    location: str | None = None  # file:line for inputs that never became records
    excerpt: str = ""  # the start of the offending input
    duplicate_of: str | None = None  # a duplicate's kept copy (tpt.dedup)
    similarity: float | None = None  # and their estimated Jaccard similarity

    def __post_init__(self) -> None:
        # The excerpt is for display; the input's own invalid characters must not make the reject unwritable.
        self.excerpt = self.excerpt.encode("utf-8", "replace").decode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        """The reject as a row of OUT/rejects/; a duplicate's fields only on a duplicate."""
        row = dataclasses.asdict(self)
        return {name: value for name, value in row.items() if value is not None or name not in DUPLICATE_FIELDS}

    @property
    def key(self) -> str:
        """What the reject's output part is hashed from: its record's id, or where a raw input was read."""
        return self.id or self.location or ""

    @classmethod
    def of(cls, record: Record, stage: str, reason: str, detail: str, **fields: Any) -> Reject:
        return cls(record.source, stage, reason, detail, id=record.id, excerpt=record.text[:200], **fields)
