"""Shared fixtures: the demo config, small corpora, and one demo pipeline run per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tpt.config import PipelineConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"


@pytest.fixture(scope="session")
def demo_config() -> PipelineConfig:
    """The demo config without thinking generation: minutes of CPU generation would buy the
    tests that use it nothing; the thinking tests run the think stage on their own configs."""
    return load_config(DEMO_CONFIG).model_copy(update={"generate": None})


@pytest.fixture(scope="session")
def demo_run(demo_config, tmp_path_factory) -> tuple[PipelineConfig, dict]:
    """The demo config through the Beam pipeline (2 worker processes), once per session."""
    from pipelines.beam.pipeline import run

    config = demo_config.with_output_dir(str(tmp_path_factory.mktemp("demo-run")))
    return config, run(config, workers=2)


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    """A JSONL file of `rows`; a str row is written as the raw line (for malformed input)."""
    with open(path, "w", encoding="utf-8") as stream:
        for row in rows:
            stream.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path
