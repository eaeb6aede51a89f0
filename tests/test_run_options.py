"""`tpt run`'s counts of workers and tasks: 0 (or none given) is the default, a negative count is one line, exit 2."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tpt.cli import main as tpt
from tpt.run.registry import LOCAL_WORKERS


@pytest.fixture
def config(tmp_path):
    write_jsonl(tmp_path / "docs.jsonl", [{"id": f"d{i}", "text": f"Document {i}."} for i in range(4)])
    path = tmp_path / "config.yaml"
    path.write_text("sources: [{name: web, path: docs.jsonl}]\noutput: {parts: 1}\n")
    return path


@pytest.mark.parametrize(("engine", "option", "value"), [
    ("beam", "--workers", "-1"), ("datatrove", "--workers", "-1"), ("datatrove", "--tasks", "-2")])
def test_a_negative_count_is_refused_in_one_line(config, tmp_path, capsys, engine, option, value):
    assert tpt(["run", str(config), "--output", str(tmp_path / "out"), "--engine", engine, option, value]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"tpt run: error: {option} {value}: expected 0 (the default) or more"]
    assert not (tmp_path / "out").exists()


def test_zero_workers_is_the_default(config, tmp_path):
    assert tpt(["run", str(config), "--output", str(tmp_path / "out"), "--workers", "0"]) == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["engine"]["workers"] == LOCAL_WORKERS
