"""The transformers backend generating with the embedded SmolLM2 teacher on the CPU (a few tokens per request)."""

from __future__ import annotations

import pytest

from tpt.config import GenerateConfig
from tpt.generate.backends import build_backend
from tpt.generate.prompts import PromptBuilder, load_template
from tpt.generate.types import Request

BASE = GenerateConfig(max_new_tokens=6, micro_batch_size=2, stop=[])


@pytest.fixture(scope="module")
def loaded():
    """The teacher, loaded once for the module (seconds on the CPU)."""
    backend = build_backend(BASE)
    backend.setup()
    yield backend
    backend.close()


@pytest.fixture
def backend(loaded):
    """The loaded teacher with the base config, whatever config the test before set: no test depends on the order."""
    loaded.config = BASE
    return loaded


def with_config(backend, **changes):
    backend.config = backend.config.model_copy(update=changes)
    return backend


def test_generates_in_request_order_with_token_counts(backend):
    builder = PromptBuilder(load_template("default"), chat=True)
    documents = ["Water boils at 100 degrees Celsius at sea level.", "The mitochondria produce most of a cell's ATP.",
                 "A prime number has exactly two divisors."]
    requests = [builder.request(f"doc{i}", d) for i, d in enumerate(documents)]
    sampling = with_config(backend, temperature=0.6)
    completions = sampling.generate(requests)
    assert [c.id for c in completions] == ["doc0", "doc1", "doc2"]
    for completion in completions:
        assert completion.finish_reason == "length" and completion.output_tokens == 6 and completion.text.strip()
        assert completion.prompt_tokens > 40  # the chat template and the instruction around the document
    assert [c.text for c in sampling.generate(requests)] == [c.text for c in completions]  # seeded by request: reproducible


def test_stops_at_a_stop_string(backend):
    completion, = with_config(backend, temperature=0.0, stop=[","], max_new_tokens=12).generate(
        [Request("count", prompt="1, 2, 3, 4, 5, 6, 7, 8, 9,")])
    assert completion.finish_reason == "stop" and completion.text.endswith(",") and completion.output_tokens < 12


def test_a_prompt_over_the_context_fails_alone(backend):
    too_long = Request("long", prompt="word " * 9000)
    completions = with_config(backend, temperature=0.0, stop=[], max_new_tokens=2).generate([too_long, Request("short", prompt="Hello")])
    assert completions[0].finish_reason == "error" and "does not fit the model's context of 8,192 tokens" in completions[0].error
    assert completions[1].finish_reason == "length" and completions[1].output_tokens == 2
