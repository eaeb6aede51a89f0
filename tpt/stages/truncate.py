r"""Truncate each document to the teacher's token budget (the paper: 2k tokens).

The cut falls at a token boundary of the teacher's own tokenizer, so the kept
text is a true prefix of the document, and `kept_tokens` is exact: it is what
the kept text encodes to.

A prefix can tokenize differently only near its end. A pre-tokenizer splits
text into pieces (words, digit runs, whitespace runs), deciding each piece
from at most the two characters after it (GPT-2's `\s+(?!\S)` gives a word
its space back), and the model encodes each piece on its own. So every piece
before the last two that start before the cut keeps its tokens, and only the
text from the start of those two to the cut is encoded again. The first of
them must come back as the document's own tokens; a tokenizer that marks the
start of a text (a prefix space, SentencePiece's "▁") fails that check, and
then the whole prefix is encoded instead.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from tokenizers import Encoding, Tokenizer

from tpt.assets import tokenizer_file
from tpt.schema import Record, Reject
from tpt.stages.base import BatchStage


class Span(NamedTuple):
    """text[:end] encodes as `head` tokens (those of text[:start]) followed by the encoding of text[start:end]."""

    start: int
    end: int
    head: int
    check: list[int]  # the document's own tokens for the span's first piece


class Truncate(BatchStage):
    name: ClassVar[str] = "truncate"
    worker_state = ("_encoder",)

    def __init__(self, tokenizer: str, max_doc_tokens: int, batch_size: int = 256):
        self.tokenizer = tokenizer
        self.max_doc_tokens = max_doc_tokens
        self.batch_size = batch_size
        self._encoder: Tokenizer | None = None

    def setup(self) -> None:
        if self._encoder is None:
            encoder = Tokenizer.from_file(str(tokenizer_file(self.tokenizer)))
            encoder.no_truncation()
            encoder.no_padding()
            self._encoder = encoder

    def process(self, batch: list[Record]) -> list[Record | Reject]:
        texts = [r.text for r in batch]
        encodings = self._encode(texts)
        doc_tokens = [len(e) for e in encodings]
        kept, kept_tokens = list(texts), list(doc_tokens)
        encoded = [(i, Span(0, len(texts[i]), 0, []), encodings[i]) for i, n in enumerate(doc_tokens) if n > self.max_doc_tokens]
        while encoded:
            spans = []
            for i, span, encoding in encoded:
                if span.check and encoding.ids[: len(span.check)] != span.check:  # the text's start is marked
                    spans.append((i, Span(0, span.end, 0, [])))
                elif span.head + len(encoding) > self.max_doc_tokens:
                    spans.append((i, self._cut(span, encoding)))
                else:
                    kept[i], kept_tokens[i] = texts[i][: span.end], span.head + len(encoding)
            encodings = self._encode([texts[i][w.start : w.end] for i, w in spans])
            encoded = [(i, span, encoding) for (i, span), encoding in zip(spans, encodings)]
        return [
            record.replace(text=text, doc_tokens=n_doc, kept_tokens=n_kept, truncated=n_doc > n_kept)
            for record, text, n_doc, n_kept in zip(batch, kept, doc_tokens, kept_tokens)
        ]

    def _encode(self, texts: list[str]) -> list[Encoding]:
        return self._encoder.encode_batch(texts, add_special_tokens=False) if texts else []

    def _cut(self, span: Span, encoding: Encoding) -> Span:
        """Cut before the first token past the budget (before the last kept one if that cuts nothing), and encode
        again from the second last piece that starts before the cut."""
        first_over = self.max_doc_tokens - span.head
        end = encoding.token_to_chars(first_over)[0]
        if span.start + end >= span.end:
            end = encoding.token_to_chars(first_over - 1)[0]
        starts = piece_starts(encoding, first_over, end)
        if len(starts) < 2:  # no piece is sure to keep its tokens: encode the whole prefix
            return Span(0, span.start + end, 0, [])
        first, second = starts
        return Span(span.start + encoding.token_to_chars(first)[0], span.start + end, span.head + first, encoding.ids[first:second])


def piece_starts(encoding: Encoding, before: int, end: int) -> list[int]:
    """The last two tokens before token `before` that begin a pre-tokenizer piece before character `end`, in order."""
    starts: list[int] = []
    token = before - 1
    while len(starts) < 2 and token > 0:
        if encoding.token_to_word(token) != encoding.token_to_word(token - 1) and encoding.token_to_chars(token)[0] < end:
            starts.insert(0, token)
        token -= 1
    return starts
