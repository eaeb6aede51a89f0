"""Truncate each document to the teacher's token budget (the paper: 2k tokens).

The cut falls at a token boundary of the teacher's own tokenizer, taken from
the encoding's character offsets, so the kept text is a true prefix of the
document. A prefix can re-tokenize differently at its end, so every cut text
is encoded again and cut again until it fits: `kept_tokens` is exact.
"""

from __future__ import annotations

from typing import ClassVar

from tokenizers import Tokenizer

from tpt.assets import tokenizer_file
from tpt.schema import Record, Reject
from tpt.stages.base import Stage


class Truncate(Stage):
    name: ClassVar[str] = "truncate"
    adds: ClassVar[tuple[str, ...]] = ("doc_tokens", "kept_tokens", "truncated")

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
        self.setup()
        encodings = self._encoder.encode_batch([r.text for r in batch], add_special_tokens=False)
        doc_tokens = [len(e.ids) for e in encodings]
        kept = [r.text for r in batch]
        kept_tokens = list(doc_tokens)
        over = [i for i, n in enumerate(doc_tokens) if n > self.max_doc_tokens]
        while over:
            for i in over:
                kept[i] = self._cut(kept[i], encodings[i].offsets)
            recheck = self._encoder.encode_batch([kept[i] for i in over], add_special_tokens=False)
            for i, encoding in zip(over, recheck):
                encodings[i] = encoding
                kept_tokens[i] = len(encoding.ids)
            over = [i for i in over if kept_tokens[i] > self.max_doc_tokens]
        return [
            record.replace(text=text, doc_tokens=n_doc, kept_tokens=n_kept, truncated=n_doc > n_kept)
            for record, text, n_doc, n_kept in zip(batch, kept, doc_tokens, kept_tokens)
        ]

    def _cut(self, text: str, offsets: list[tuple[int, int]]) -> str:
        """The text before the first token past the budget (before the last kept one if that cuts nothing)."""
        end = offsets[self.max_doc_tokens][0]
        if end >= len(text):
            end = offsets[self.max_doc_tokens - 1][0]
        return text[:end]
