"""LLM labelling: a structured prompt built from the taxonomy, a JSON answer checked against it.

Documents stream through one window of requests in flight (`tpt.generate.window`,
the think stage's), so a continuous-batching server never waits for a round
to finish. An answer that is not JSON, lacks an axis or names a label outside
the taxonomy is asked for once more in the same window (the model sees its
answer and what was wrong with it); a second bad answer is recorded as failed
with both reasons, never replaced by a default label.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, NamedTuple

from tpt.classify.labelset import label_row
from tpt.classify.taxonomy import AXES, Taxonomy
from tpt.config import GenerateConfig
from tpt.generate.backend import Backend
from tpt.generate.types import Completion, Request
from tpt.generate.window import Window
from tpt.schema import Record

SYSTEM = "You classify documents for a language-model pre-training corpus. You answer with one JSON object and nothing else."
# A one-shot exchange before the real question: small instruction models answer in JSON only after seeing one.
# Its answer is the first label of each axis, which in the default taxonomy fits this sentence.
EXAMPLE = "A triangle has three sides and three corners."
RETRY = "That answer is invalid: {error}. Answer again with only the JSON object, one label id from the lists for each of {axes}."
_NOT_ID = re.compile(r"[^a-z0-9]+")


class AnswerError(ValueError):
    """An LLM answer that is not a valid labelling."""


def label_prompt(taxonomy: Taxonomy, text: str) -> str:
    """The user message: every axis with its label definitions, the document, the answer format."""
    lines = ["Label the document below on three axes. For each axis choose exactly one label id from its list.", ""]
    for axis in taxonomy.axes.values():
        lines.append(f"{axis.name}: {axis.question}")
        lines += [f"- {label}: {definition}" for label, definition in axis.labels.items()]
        lines.append("")
    lines += ["Document:", '"""', text, '"""', "", f"Answer with one JSON object with the keys {', '.join(AXES)}."]
    return "\n".join(lines)


def example_answer(taxonomy: Taxonomy) -> str:
    return json.dumps({axis: next(iter(taxonomy[axis].labels)) for axis in AXES})


def parse_answer(completion: Completion, taxonomy: Taxonomy) -> dict[str, str]:
    """The labels in an answer: the first JSON object in it that has the axes, each value a label id of its axis."""
    if completion.finish_reason == "error":
        raise AnswerError(f"generation failed: {completion.error}")
    found = _first_object(completion.text)
    if found is None:
        raise AnswerError(f"no JSON object in the answer {completion.text[:120]!r}")
    missing = [axis for axis in AXES if axis not in found]
    if missing:
        raise AnswerError(f"the JSON answer lacks {', '.join(missing)}")
    labels = {}
    for axis in AXES:
        value = found[axis]
        label = _NOT_ID.sub("_", value.lower()).strip("_") if isinstance(value, str) else value
        if not isinstance(label, str) or label not in taxonomy[axis].labels:
            raise AnswerError(f"{axis} {value!r} is not one of {', '.join(taxonomy[axis].labels)}")
        labels[axis] = label
    return labels


def _first_object(text: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    for start in (i for i, c in enumerate(text) if c == "{"):
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and any(axis in value for axis in AXES):
            return value
    return None


class Attempt(NamedTuple):
    """A request in the window: the record it labels, and the first answer and its fault when it is the retry."""

    record: Record
    first: Completion | None = None
    error: AnswerError | None = None


class LLMLabeller:
    """Labels documents through a window of `generate.max_in_flight` requests on a backend, so a continuous-batching
    server always has the next document queued; an invalid answer is retried once, in the same window."""

    def __init__(self, backend: Backend, taxonomy: Taxonomy, generate: GenerateConfig, max_chars: int):
        self.backend, self.taxonomy, self.max_chars = backend, taxonomy, max_chars
        self.window_size = generate.max_in_flight
        self.annotator = f"llm:{generate.model}"

    def request(self, record: Record) -> Request:
        """The first question about a record."""
        return Request(record.id, messages=self._messages(record))

    def retry(self, attempt: Attempt) -> Request:
        """The question again, after the record's invalid first answer and what was wrong with it."""
        return Request(f"{attempt.record.id}#retry", messages=(
            *self._messages(attempt.record), {"role": "assistant", "content": attempt.first.text},
            {"role": "user", "content": RETRY.format(error=attempt.error, axes=", ".join(AXES))}))

    def _messages(self, record: Record) -> tuple[dict[str, str], ...]:
        return (
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": label_prompt(self.taxonomy, EXAMPLE)},
            {"role": "assistant", "content": example_answer(self.taxonomy)},
            {"role": "user", "content": label_prompt(self.taxonomy, record.text[:self.max_chars])},
        )

    def label(self, records: Iterable[Record]) -> Iterator[dict[str, Any]]:
        """One labels-file row per record, each the moment its answer settles it (in the order they finish)."""
        window, records = Window(self.backend, self.window_size), iter(records)
        while True:  # refill the window's room in one submit (one wake-up of the backend), then take what finished
            window.submit([(Attempt(record), self.request(record)) for record in islice(records, max(window.room, 0))])
            if not window.in_flight:
                return
            yield from self._settle(window, window.finished(wait=True))

    def _settle(self, window: Window, finished: list[tuple[Attempt, Completion]]) -> Iterator[dict[str, Any]]:
        """The rows of the finished answers; first invalid answers go back into the window as their retries."""
        retries = []
        for attempt, completion in finished:
            try:
                labels, error = parse_answer(completion, self.taxonomy), None
            except AnswerError as fault:
                labels, error = None, fault
            if error is not None and attempt.first is None:
                retry = Attempt(attempt.record, completion, error)
                retries.append((retry, self.retry(retry)))
                continue
            spent = [completion] if attempt.first is None else [attempt.first, completion]  # the cost of both attempts
            yield label_row(attempt.record, self.annotator, labels, answer=completion.text,
                            error=None if error is None else f"answer: {attempt.error}; retry: {error}",
                            prompt_tokens=sum(c.prompt_tokens for c in spent), output_tokens=sum(c.output_tokens for c in spent))
        window.submit(retries)
