"""Truncation to the teacher's token budget: a true prefix, exact token counts, nothing over budget."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer

from tests.conftest import ROOT
from tpt.assets import tokenizer_file
from tpt.schema import Record
from tpt.stages.truncate import Truncate


@pytest.fixture(scope="module")
def encoder() -> Tokenizer:
    return Tokenizer.from_file(str(tokenizer_file("embedded")))


@pytest.fixture(scope="module")
def demo_records() -> list[Record]:
    with open(ROOT / "data" / "demo" / "reference.jsonl", encoding="utf-8") as stream:
        rows = [json.loads(line) for line in stream]
    return [Record(id=r["id"], source="reference", text=r["text"]) for r in rows[:80]]


def count(encoder: Tokenizer, text: str) -> int:
    return len(encoder.encode(text, add_special_tokens=False).ids)


def truncate_to(budget: int, tokenizer: str = "embedded") -> Truncate:
    """The stage, set up as an engine sets it up before it streams."""
    stage = Truncate(tokenizer, budget)
    stage.setup()
    return stage


@pytest.mark.parametrize("budget", [64, 2048])
def test_truncated_texts_are_prefixes_within_budget(encoder, demo_records, budget):
    out = truncate_to(budget).process(demo_records)
    assert [r.id for r in out] == [r.id for r in demo_records]
    for before, after in zip(demo_records, out):
        assert before.text.startswith(after.text)
        assert after.doc_tokens == count(encoder, before.text)
        assert after.kept_tokens == count(encoder, after.text) <= budget
        assert after.truncated == (after.doc_tokens > budget)
        if after.truncated:
            assert after.kept_tokens >= budget - 4, "cut far below the budget"
        else:
            assert after.text == before.text
    assert any(r.truncated for r in out) and (budget == 64 or not all(r.truncated for r in out))


def test_multibyte_characters_split_across_tokens(encoder):
    texts = ["🎉" * 40, "日本語のテキスト" * 30, "naïve café " * 50]
    for budget in (1, 7, 13):
        out = truncate_to(budget).process([Record(str(i), "s", t) for i, t in enumerate(texts)])
        for text, record in zip(texts, out):
            assert text.startswith(record.text)
            assert record.kept_tokens == count(encoder, record.text) <= budget


# Texts whose pieces re-merge or split when cut: whitespace runs before a word or at the end, contractions, digit
# runs, characters split across byte-level tokens, combining accents, special tokens written in the text, code.
EDGE_TEXTS = [
    "a  b   c    d\n\n  e\t\tf  ",
    "don't won't they'll I'm we've 's 're 'd",
    "12345 678 9.0 1,234,567  2026",
    "🎉" * 12 + " x 🎉🎉 y",
    "日本語のテキスト" * 4,
    "naïve café  re\u0301sume\u0301 o\u0308",
    "<|im_end|>hello<|im_start|> x<|endoftext|>  <file_sep>",
    "def f(x):\n    return x  \n\n\n    # done\n",
    "http://example.com/a/b?c=d&e=f   trailing",
    "\r\n\r\n  \r\n x!!!???...,,,;;;",
]


def cut_by_whole_prefix(encoder: Tokenizer, text: str, budget: int) -> str:
    """The cut found by encoding the whole prefix again after every cut: slow, and plainly exact."""
    encoding = encoder.encode(text, add_special_tokens=False)
    while len(encoding) > budget:
        end = encoding.offsets[budget][0]
        text = text[: end if end < len(text) else encoding.offsets[budget - 1][0]]
        encoding = encoder.encode(text, add_special_tokens=False)
    return text


def test_every_budget_cuts_where_encoding_the_whole_prefix_does(encoder):
    records = [Record(str(i), "s", t) for i, t in enumerate(EDGE_TEXTS)]
    truncate = truncate_to(1)
    for budget in range(1, max(count(encoder, t) for t in EDGE_TEXTS) + 1):
        truncate.max_doc_tokens = budget  # one tokenizer load for every budget
        for text, record in zip(EDGE_TEXTS, truncate.process(records)):
            assert record.text == cut_by_whole_prefix(encoder, text, budget), (budget, text)
            assert record.kept_tokens == count(encoder, record.text) <= budget


class RecordingEncoder:
    """The real tokenizer, noting every text it is asked to encode."""

    def __init__(self, encoder: Tokenizer):
        self.encoder, self.texts = encoder, []

    def encode_batch(self, texts, **kwargs):
        self.texts.append(list(texts))
        return self.encoder.encode_batch(texts, **kwargs)


def test_a_cut_document_is_encoded_again_only_near_its_cut(encoder, demo_records):
    truncate = Truncate("embedded", 64)
    truncate._encoder = RecordingEncoder(encoder)
    out = truncate.process(demo_records)
    documents, *again = truncate._encoder.texts
    assert documents == [r.text for r in demo_records]
    cut = [r for r in out if r.truncated]
    assert len(cut) > 40 and len(again) == 1 and len(again[0]) == len(cut)
    assert all(len(window) < 64 for window in again[0]), "a cut document was encoded whole again"
    for record in cut:
        assert record.kept_tokens == count(encoder, record.text) <= 64


@pytest.fixture(scope="module")
def prefix_space_tokenizer(encoder, tmp_path_factory) -> str:
    """The embedded tokenizer set to add a space before every text it encodes, as many BPE tokenizers do."""
    config = json.loads(encoder.to_str())
    config["pre_tokenizer"]["add_prefix_space"] = True
    folder = tmp_path_factory.mktemp("prefix-space")
    (folder / "tokenizer.json").write_text(json.dumps(config), encoding="utf-8")
    return str(folder)


def test_a_tokenizer_that_marks_the_start_of_a_text_still_counts_exactly(prefix_space_tokenizer, demo_records):
    marking = Tokenizer.from_file(str(tokenizer_file(prefix_space_tokenizer)))
    assert marking.encode("word").ids == marking.encode(" word").ids, "the variant must mark the start of a text"
    records = demo_records + [Record(f"edge-{i}", "s", t) for i, t in enumerate(EDGE_TEXTS)]
    truncate = truncate_to(1, prefix_space_tokenizer)
    for budget in (3, 7, 64):
        truncate.max_doc_tokens = budget
        out = truncate.process(records)
        assert any(r.truncated for r in out)
        for before, after in zip(records, out):
            assert before.text.startswith(after.text)
            assert after.kept_tokens == count(marking, after.text) <= budget
            assert after.text == cut_by_whole_prefix(marking, before.text, budget)
