"""The rules between a document and its samples: the requests it makes, what is stored of an answer, and the samples
a stored answer becomes.

- A document asks one request per sample (`generate.samples_per_document`, or its class's `generate.budgets` rule),
  each with its class's `max_new_tokens`; a request is known by the fingerprint of what it asks, whatever document
  asks it, so the same text under another id or source finds the stored answer. With exact deduplication, it is
  also known by what its text would ask once normalised (`dedup.normalize`), so a copy that differs only there (its
  whitespace, say) finds the answer another copy of the text was given, when a rerun makes it the kept copy.
- What is stored of an answer: its text as the server gave it (made safe by tpt.generate.answers), why it stopped,
  and token counts that are counts.
- A stored answer becomes its document's sample [d; t] (cut at `</think>`, flagged, at most twice its budget) and
  the same sample of each copy the document carries (`dedup.duplicates: reuse`), or a reject for each.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any, NamedTuple

from tokenizers import Tokenizer

from tpt.config import GenerateConfig, NormalizeConfig
from tpt.dedup import with_kept_fields
from tpt.dedup.signature import normalize
from tpt.generate import postprocess
from tpt.generate.answers import plausible_count, sanitise
from tpt.generate.budgets import Budgets
from tpt.generate.prompts import PromptBuilder
from tpt.generate.types import Completion, Request
from tpt.schema import Record, Reject

STAGE = "think"  # the stage whose rejects these are
# what a stored answer may say was put right (tpt.generate.answers), and the run report's answers_<name> counting it
REPAIRS = {"over_budget": "over_budget", "characters_replaced": "with_invalid_characters", "usage_invalid": "with_invalid_usage"}


def sample_ids(document_id: str, samples: int) -> list[str]:
    """One request per sample: the document id itself, or id#k when several samples are asked for."""
    return [document_id] if samples == 1 else [f"{document_id}#{k}" for k in range(samples)]


class Pending(NamedTuple):
    """A sample's request on its way: the record it is for, the request, the fingerprint its answer is stored under,
    which of the record's samples it is, and the fingerprint of what its text would ask normalised, where that differs."""

    record: Record
    request: Request
    fingerprint: str
    sample: int
    same_text: str | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        """Every fingerprint an answer to it may be stored under."""
        return (self.fingerprint,) if self.same_text is None else (self.fingerprint, self.same_text)


def fingerprint(config: GenerateConfig, request: Request, sample: int) -> str:
    """What a stored answer answered, whatever document asked it: the prompt, the model, the sampling settings and,
    past the first, the sample's number."""
    c = config
    asked = [c.model, request.messages, request.prompt, c.temperature, c.top_p, request.max_new_tokens, c.stop, c.seed]
    return hashlib.blake2b(json.dumps(asked + [sample] if sample else asked).encode(), digest_size=8).hexdigest()


class SampleRules:
    """A run's generate section applied to documents, answers and stored answers (see the module)."""

    def __init__(self, config: GenerateConfig, encoder: Tokenizer, prompts: PromptBuilder,
                 same_text: NormalizeConfig | None = None):
        """`same_text`: the normalisation under which two texts are one (exact deduplication's), or None."""
        self.config = config
        self.budgets = Budgets(config)
        self._encoder = encoder  # the teacher's tokenizer: thinking_tokens, sample_tokens, cuts
        self._prompts = prompts
        self._same_text = same_text

    def requests(self, record: Record) -> list[Pending]:
        """The requests of a record's samples, each with its fingerprints."""
        pending, budget = [], self.budgets.of(record)
        normalised = normalize(record.text, self._same_text) if self._same_text else record.text
        for sample, rid in enumerate(sample_ids(record.id, budget.samples_per_document)):
            request = self._request(rid, record.text, budget.max_new_tokens)
            same_text = None
            if normalised != record.text:
                same_text = fingerprint(self.config, self._request(rid, normalised, budget.max_new_tokens), sample)
            pending.append(Pending(record, request, fingerprint(self.config, request, sample), sample, same_text))
        return pending

    def _request(self, rid: str, text: str, max_new_tokens: int) -> Request:
        return dataclasses.replace(self._prompts.request(rid, text), max_new_tokens=max_new_tokens)

    def entry(self, pending: Pending, completion: Completion) -> dict[str, Any]:
        """What is stored of an answer: the text, why it stopped and its token counts, or why it failed."""
        entry = {"id": completion.id, "key": pending.fingerprint, "retries": completion.retries, "t": time.time()}
        if pending.same_text:
            entry["same_text"] = pending.same_text
        if completion.server:
            entry["server"] = completion.server
        if completion.failed_at:
            entry["failed_at"] = completion.failed_at
        if completion.finish_reason == "error":
            return {**entry, "error": completion.error}
        budget, output_tokens = pending.request.max_new_tokens, completion.output_tokens
        if not plausible_count(output_tokens, completion.text, budget):
            output_tokens = self._count(completion.text)
        reason = completion.finish_reason
        if reason == "unknown" and output_tokens >= budget:
            reason = "length"  # the server did not say why it stopped, but the budget ran out
        repairs = {"over_budget": completion.over_budget or output_tokens > 2 * budget,
                   "characters_replaced": completion.characters_replaced, "usage_invalid": completion.usage_invalid}
        return {**entry, "raw": completion.text, "finish_reason": reason, "prompt_tokens": completion.prompt_tokens,
                "output_tokens": output_tokens, **{name: value for name, value in repairs.items() if value}}

    def samples(self, pending: Pending, entry: dict[str, Any]) -> list[Record | Reject]:
        """The sample a stored answer makes of its document, and the same sample of each copy the document carries:
        the copy's own text, with the kept document's labels and thinking; or a reject for each."""
        record, samples = pending.record, self.budgets.of(pending.record).samples_per_document
        documents = [(record, pending.request.id)]
        documents += [(with_kept_fields(copy, record), sample_ids(copy.id, samples)[pending.sample]) for copy in record.copies]
        if "error" in entry:
            return set_aside(documents, "generation_failed", entry["error"])
        raw, replaced = sanitise(entry["raw"])  # stored by another writer, it may hold what no tokenizer takes
        thinking, limit = postprocess.clean(raw), 2 * pending.request.max_new_tokens
        encoding = self._encoder.encode(thinking, add_special_tokens=False)
        over_budget = entry.get("over_budget", False) or len(encoding.ids) > limit
        if len(encoding.ids) > limit:  # cut at twice the budget: no server answer is kept longer
            thinking = thinking[:encoding.offsets[limit - 1][1]]
            encoding = self._encoder.encode(thinking, add_special_tokens=False)
        reason = "length" if over_budget else postprocess.finish_reason(raw, entry["finish_reason"])
        flags = postprocess.flags(thinking, reason, self.config.repetition_ngram, self.config.repetition_threshold)
        if over_budget:
            flags.append("over_budget")
        if entry.get("characters_replaced") or replaced:
            flags.append("invalid_characters")
        if "\x00" in thinking:  # never in the shards, as the reader sets aside documents holding one (tpt.io.read)
            return set_aside(documents, "nul_bytes", f"the thinking contains NUL characters ({len(thinking):,} characters)")
        if flags and self.config.flagged == "reject":
            return set_aside(documents, f"thinking_{flags[0]}", f"thinking flagged {', '.join(flags)} ({len(thinking):,} characters)")
        out = []
        for document, rid in documents:
            sample = document.replace(id=rid, copies=[]).with_thinking(
                thinking, self.config.separator, thinking_tokens=len(encoding.ids), finish_reason=reason,
                thinking_flags=flags if self.config.flagged == "flag" else [], thinking_budget=pending.request.max_new_tokens)
            out.append(sample.replace(sample_tokens=self._count(sample.text)))
        return out

    def _count(self, text: str) -> int:
        return len(self._encoder.encode(text, add_special_tokens=False).ids)


def set_aside(documents: list[tuple[Record, str]], reason: str, detail: str) -> list[Reject]:
    """A failed or flagged sample's reject, for its document and each copy (under their samples' ids)."""
    return [Reject.of(document.replace(id=rid), STAGE, reason, detail, duplicate_of=document.duplicate_of)
            for document, rid in documents]
