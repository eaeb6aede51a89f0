"""An OpenAI-compatible server's answers, read without trusting them: at most a byte cap, any shape a reason.

A JSON answer or the server-sent events of a streamed one become one
`Completion`: the first choice's thinking and text (a reasoning parser's
`reasoning_content` put back before `</think>`), its finish reason and usage
(counts kept only when they are counts, tpt.generate.answers), its code points
made safe. Past its byte cap an answer is over its budget: reading stops, and
a JSON answer cut short is closed after its last whole value. Any other shape is
a `PermanentError` with the reason.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tpt.generate.answers import sanitise, token_count
from tpt.generate.types import Completion

REASON_BYTES = 500  # of an HTTP error's body, kept as its reason


class PermanentError(Exception):
    """A failure a retry cannot fix: 4xx other than 429, an answer that is not a completion."""


class Answer:
    """One completion as it is read, from a JSON answer or the events of a streamed one: the first choice's thinking
    and text (at most `cap` characters in all: past them the answer is over its budget), its finish reason, usage."""

    def __init__(self, shown: str, chat: bool, cap: int):
        self.shown, self.chat, self.cap = shown, chat, cap
        self.reasoning: list[str] = []
        self.text: list[str] = []
        self.size = 0
        self.reason: Any = None
        self.usage: Any = None
        self.answered = self.over_budget = False
        self.last: Any = None

    def add(self, chunk: Any) -> None:
        """One JSON answer, or one event of a stream."""
        self.last = chunk
        try:
            choices = chunk.get("choices")
            if choices is None:
                raise PermanentError(f"{self.shown} answered without choices: {_head(chunk)}")
            for choice in choices[:1]:  # a stream's usage-only chunk has none
                part = choice.get("message", choice.get("delta")) if self.chat else choice
                if not isinstance(part, dict) or not self.chat and "text" not in part:
                    raise PermanentError(f"{self.shown} answered a choice without {'a message' if self.chat else 'text'}: {_head(chunk)}")
                self.answered = True
                # reasoning servers (vLLM/SGLang reasoning parsers) return the thinking apart from the content
                self._keep(self.reasoning, part.get("reasoning_content") or part.get("reasoning") or "", chunk)
                self._keep(self.text, part.get("content") or part.get("text") or "", chunk)
                self.reason = choice.get("finish_reason") or self.reason
            self.usage = chunk.get("usage") or self.usage
        except (AttributeError, TypeError) as error:  # JSON of another shape: failed with the reason, never a task that dies unheard
            raise PermanentError(f"{self.shown} answered something that is not a completion: {type(error).__name__}: {error}") from None

    def _keep(self, parts: list[str], piece: Any, chunk: Any) -> None:
        if not isinstance(piece, str):
            raise PermanentError(f"{self.shown} answered a choice whose text is not a string: {_head(chunk)}")
        if len(piece) > self.cap - self.size:
            piece, self.over_budget = piece[:self.cap - self.size], True
        parts.append(piece)
        self.size += len(piece)

    def completion(self, request_id: str, budget: int, prompt_most: int) -> Completion:
        """The answer read, its text sanitised and its token counts validated (a count that is not one is 0: unknown)."""
        if not self.answered:  # never an empty completion: nothing was generated
            raise PermanentError(f"{self.shown} answered without a choice: {_head(self.last) if self.last is not None else 'no data'}")
        (thinking, replaced), (answer, replaced_too) = sanitise("".join(self.reasoning)), sanitise("".join(self.text))
        usage = self.usage if self.usage is not None else {}
        limits = {"prompt_tokens": prompt_most, "completion_tokens": 2 * budget}
        counts = [token_count(usage.get(name, 0), most) for name, most in limits.items()] if isinstance(usage, dict) else [None, None]
        reason = self.reason if isinstance(self.reason, str) and self.reason in ("stop", "length") else "unknown"
        return Completion(
            request_id,
            # a reasoning parser took out the `</think>` before the answer: put back, the answer is cut as from any server
            f"{thinking}</think>{answer}" if thinking and answer else thinking or answer,
            "length" if self.over_budget else reason,  # a missing reason is never taken for "stop"
            prompt_tokens=counts[0] or 0,
            output_tokens=0 if self.over_budget else counts[1] or 0,  # the server's count is of more than was read
            characters_replaced=replaced + replaced_too,
            over_budget=self.over_budget,
            usage_invalid=None in counts,
        )


async def read_at_most(stream: aiohttp.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of a body, and whether there was more (left unread)."""
    chunks, size = [], 0
    while size <= limit:
        chunk = await stream.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit], True


async def read_json(stream: aiohttp.StreamReader, answer: Answer) -> None:
    """A JSON answer into `answer`; one past its cap is cut there, closed (close_cut_json) and over budget."""
    body, more = await read_at_most(stream, answer.cap)
    text = _text(body)
    answer.add(_parse(close_cut_json(text) if more else text, answer.shown))
    answer.over_budget |= more


async def read_events(stream: aiohttp.StreamReader, answer: Answer) -> None:
    """Each `data:` event of a server-sent-events answer into `answer`, up to `[DONE]`, the end of the body, or
    its cap (a line longer than the cap, or more text than it)."""
    pending = bytearray()
    async for data in stream.iter_any():
        pending += data
        end = pending.rfind(b"\n")
        if end < 0:
            if len(pending) > answer.cap:
                answer.over_budget = True
                return
            continue
        lines, pending = pending[:end].split(b"\n"), pending[end + 1:]
        for line in lines:
            if not _event(line, answer) or answer.over_budget:
                return
    _event(pending, answer)


def _event(line: bytes, answer: Answer) -> bool:
    """Take one line of a stream into `answer`; False at `[DONE]`."""
    line = _text(line).strip()
    if not line.startswith("data:"):
        return True  # a comment (": ping"), an event name or id, a blank line between events
    if line[5:].strip() == "[DONE]":
        return False
    answer.add(_parse(line[5:], answer.shown))
    return True


def _text(body: bytes) -> str:
    """A body as text: a byte that is not UTF-8 becomes a lone surrogate, replaced with the rest (sanitise); no BOM."""
    return body.decode("utf-8", "surrogateescape").removeprefix("\ufeff")


def _parse(text: str, shown: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: nested deeper than the parser goes
        raise PermanentError(f"{shown} answered something that is not JSON: {type(error).__name__}: {str(error)[:200]}") from None


def _head(chunk: Any) -> str:
    """The start of a chunk, for a message (escaped: ASCII whatever it holds)."""
    return json.dumps(chunk)[:300]


async def reason_of(response: aiohttp.ClientResponse) -> str:
    """The start of an HTTP error's body, its reason."""
    body, _ = await read_at_most(response.content, REASON_BYTES)
    return body.decode("utf-8", "replace")


def close_cut_json(text: str) -> str:
    """JSON cut short, closed: cut back to its last point where closing what is open makes valid JSON (inside a
    string value, or after a whole value), and closed there. So the text of an answer past its cap is what came first.
    What is open at that point is what is open at the end: between two such points only keys, `,` and `:` come."""
    closers: list[str] = []  # what closes each open object or array, innermost last
    keys: list[bool] = []  # for each: whether it is an object whose next string is a key
    cut, quote, i = 0, "", 0
    while i < len(text):
        char, whole = text[i], True  # whole: the text up to i, closed, is valid JSON
        if char == '"':
            key, end = bool(keys) and keys[-1], _string_end(text, i + 1)
            if end is None:  # cut inside this string: a value is closed where its last whole character ends
                if not key:
                    cut, quote = _whole(text, i + 1), '"'
                break
            i, whole = end, not key
            if key:
                keys[-1] = False
        elif char in "{[":
            closers.append("}" if char == "{" else "]")
            keys.append(char == "{")
            i += 1
        elif char in "}]" and closers:
            closers.pop()
            keys.pop()
            i += 1
        elif char in ",:":
            if char == "," and closers[-1:] == ["}"]:
                keys[-1] = True
            i, whole = i + 1, False
        elif char.isspace():
            i += 1
            continue
        else:  # a number or literal, whole once a delimiter follows it
            end = i
            while end < len(text) and text[end] not in ",]} \t\r\n":
                end += 1
            if end == len(text) or end == i:
                break
            i = end
        if whole:
            cut = i
    return text[:cut] + quote + "".join(reversed(closers))


def _string_end(text: str, start: int) -> int | None:
    """The index after the quote that ends the JSON string starting at `start`, or None if the text ends first."""
    i, quote = start, text.find('"', start)
    while quote >= 0:
        escape = text.find("\\", i, quote)
        if escape < 0:
            return quote + 1
        i = escape + 2  # past the escaped character (a \u escape's digits hold no quote)
        if i > quote:
            quote = text.find('"', i)
    return None


def _whole(text: str, start: int) -> int:
    """Where the string content from `start` to the end of `text` ends on a whole character (no escape cut short)."""
    i, end = start, len(text)
    while (escape := text.find("\\", i)) >= 0:
        width = 6 if text[escape + 1:escape + 2] == "u" else 2
        if escape + width > len(text):
            return escape
        i = escape + width
    return end


def served_models(answer: bytes) -> list[str] | None:
    """The model ids of a /models answer (`{"data": [{"id": ...}, ...]}`), or None if it is not a model list."""
    try:
        models = json.loads(_text(answer))
    except (ValueError, RecursionError):
        return None
    models = models.get("data") if isinstance(models, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in models):
        return None
    return [m["id"] for m in models]
