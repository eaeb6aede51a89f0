"""Records and rejects as datatrove Documents, so tpt items flow between datatrove steps unchanged.

A record's text is the Document's text, every other field is metadata; a reject
travels as a Document flagged with its reject fields, so no step drops it.
"""

from __future__ import annotations

import dataclasses
import json

from datatrove.data import Document

from tpt.schema import Record, Reject

REJECT = "tpt_reject"


def to_document(item: Record | Reject) -> Document:
    if isinstance(item, Reject):
        return Document(text=item.excerpt, id=item.key, metadata={REJECT: item.to_dict()})
    fields = dataclasses.asdict(item)
    return Document(text=fields.pop("text"), id=fields.pop("id"), metadata=fields)


def is_reject(document: Document) -> bool:
    return REJECT in document.metadata


def from_document(document: Document) -> Record | Reject:
    if is_reject(document):
        return Reject(**document.metadata[REJECT])
    fields = dict(document.metadata)
    copies = [Record(**copy) for copy in fields.pop("copies", ())]  # the duplicates that take its thinking
    return Record(id=document.id, text=document.text, copies=copies, **fields)


def dumps(document: Document) -> str:
    """One JSON line (datatrove's text/id/metadata shape) for the shuffle files between jobs.

    ASCII escapes keep any string, even a lone surrogate in a reject's excerpt, writable and exact.
    """
    return json.dumps({"text": document.text, "id": document.id, "metadata": document.metadata})
