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


@pytest.mark.parametrize("budget", [64, 2048])
def test_truncated_texts_are_prefixes_within_budget(encoder, demo_records, budget):
    out = Truncate("embedded", budget).process(demo_records)
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
        out = Truncate("embedded", budget).process([Record(str(i), "s", t) for i, t in enumerate(texts)])
        for text, record in zip(texts, out):
            assert text.startswith(record.text)
            assert record.kept_tokens == count(encoder, record.text) <= budget
