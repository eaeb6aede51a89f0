"""NUL characters never reach the shards: a document holding one is set aside at read, and a thinking holding one
is set aside at think, both with the reason `nul_bytes`, whatever `generate.flagged` says."""

from __future__ import annotations

import json

import pytest

from tests.conftest import think_all, write_jsonl
from tests.test_generate_openai import fault_config, fault_server  # noqa: F401 (a fixture)
from tpt.config import SourceConfig
from tpt.io.read import read_file
from tpt.schema import Record, Reject
from tpt.stages.think import Think


def test_a_document_with_a_nul_character_is_set_aside_at_read(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"id": "a", "text": "nul\u0000inside"}])
    (reject,) = read_file(SourceConfig(name="s", path=str(path)), str(path), 2**20)
    assert isinstance(reject, Reject) and (reject.stage, reject.reason) == ("read", "nul_bytes")


@pytest.mark.parametrize("flagged", ["keep", "flag", "reject"])
def test_a_thinking_with_a_nul_character_is_set_aside_at_think(fault_server, tmp_path, flagged):  # noqa: F811
    answer = {"choices": [{"message": {"content": "a thought\u0000 with a NUL"}, "finish_reason": "stop"}]}
    server = fault_server(["200:" + json.dumps(answer)])
    stage = Think(fault_config(server.url, chat=True, flagged=flagged, max_in_flight=1), "embedded", str(tmp_path))
    nul, fine = think_all(stage, [Record("a", "web", "A document."), Record("b", "web", "Another.")])
    stage.close()
    assert isinstance(nul, Reject) and (nul.stage, nul.reason, nul.id) == ("think", "nul_bytes", "a")
    assert isinstance(fine, Record) and "\x00" not in fine.text
