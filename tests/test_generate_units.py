"""Thinking generation without a model: prompts, post-processing, the store, the vLLM mapping, the [d; t] sample column."""

from __future__ import annotations

import importlib.util
import logging
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tpt.config import GenerateConfig, load_config
from tpt.config_file import ConfigError
from tpt.generate import postprocess
from tpt.generate.backends import build_backend
from tpt.generate.backends.vllm import completion, sampling_options
from tpt.generate.prompts import PromptBuilder, load_template
from tpt.generate.store import ThinkingStore, read_entries
from tpt.generate.types import Request
from tpt.io.jsonlines import JsonLinesStore
from tpt.io.output import mds_sample
from tpt.schema import Record


def test_paper_defaults():
    config = GenerateConfig()
    assert (config.temperature, config.top_p, config.max_new_tokens, config.stop) == (0.6, 0.9, 8192, ["</think>"])
    assert (config.samples_per_document, config.backend, config.model, config.max_in_flight) == (1, "transformers", "embedded", 256)


def test_unknown_generate_key_names_the_allowed_ones(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sources: [{name: a, path: a.jsonl}]\ngenerate: {temprature: 0.5}\n")
    with pytest.raises(ConfigError, match=r"generate.temprature: unknown key; allowed keys here: backend, model"):
        load_config(path)


def test_default_prompt_puts_the_document_first_and_asks_for_expert_thinking():
    text = PromptBuilder(load_template("default"), chat=False).render("d1", "E = mc^2 {not a placeholder}")
    assert text.startswith("E = mc^2 {not a placeholder}\n")
    assert "expert" in text and "Feynman technique" in text and "trivial" in text


def test_random_focus_is_reproducible_per_id_and_varies_across_ids():
    builder = PromptBuilder(load_template("random_focus"), chat=True)
    again = PromptBuilder(load_template("random_focus"), chat=True)
    assert all(builder.focus(f"doc{i}") == again.focus(f"doc{i}") for i in range(50))
    assert len({builder.focus(f"doc{i}") for i in range(50)}) >= 5
    request = builder.request("doc7", "Some text.")
    assert request.prompt is None and request.messages[0]["role"] == "user"
    assert builder.focus("doc7") in request.messages[0]["content"] and "{focus}" not in request.messages[0]["content"]


def test_template_from_a_file_and_clear_errors(tmp_path):
    own = tmp_path / "mine.txt"
    own.write_text("Think about: {document}")
    assert PromptBuilder(load_template(str(own)), chat=False).request("a", "x").prompt == "Think about: x\n"
    with pytest.raises(FileNotFoundError, match="packaged: default, random_focus"):
        load_template("nope")
    (tmp_path / "bad.txt").write_text("no placeholder")
    with pytest.raises(ValueError, match=r"has no \{document\} placeholder"):
        load_template(str(tmp_path / "bad.txt"))


@pytest.mark.parametrize(("raw", "thinking"), [
    ("<think>\nStep one. Step two.\n</think>\n\nSummary that must go.", "Step one. Step two."),
    ("  <think>Only thinking, cut by the budget", "Only thinking, cut by the budget"),
    ("No tags at all.", "No tags at all."),
    ("<think></think>", ""),
])
def test_clean_strips_think_tags_and_cuts_at_the_end_tag(raw, thinking):
    assert postprocess.clean(raw) == thinking


def test_flags_truncated_empty_and_repetitive():
    prose = "Energy and mass are equivalent. A small mass holds a large energy because c squared is huge."
    assert postprocess.flags(prose, "stop", 4, 0.5) == []
    assert postprocess.flags(prose, "length", 4, 0.5) == ["truncated"]
    assert postprocess.flags("", "stop", 4, 0.5) == ["empty"]
    loop = "the text is clear and concise. " * 30
    assert postprocess.repetition_ratio(loop, 4) > 0.9 > postprocess.repetition_ratio(prose, 4)
    assert postprocess.flags(loop, "length", 4, 0.5) == ["truncated", "repetitive"]
    assert postprocess.finish_reason("a</think>", "length") == "stop"


def test_store_ignores_a_line_cut_by_a_kill_and_keeps_the_first_result(tmp_path, caplog):
    store = ThinkingStore(tmp_path, "run1", flush_every_docs=1)
    store.open(backend="transformers")
    store.append({"id": "a", "key": "k1", "raw": "first", "finish_reason": "stop"})
    store.append({"id": "b", "key": "k1", "error": "HTTP 500"})
    store.append({"id": "a", "key": "k1", "raw": "second", "finish_reason": "stop"})
    other = store.append({"id": "a", "key": "k2", "raw": "asked otherwise", "finish_reason": "stop"})
    store.close()
    assert store.fetch([other])[0]["raw"] == "asked otherwise"  # where append said it wrote it
    part = next(tmp_path.glob("run1.*.jsonl"))
    with open(part, "a") as stream:
        stream.write('{"id": "c", "raw": "cut sh')  # a writer killed mid-line
    reader = ThinkingStore(tmp_path, "run2")
    index = reader.index()
    # failures are not done (a rerun retries them); a result answers what was asked, whichever document asked it
    assert {k: e["raw"] for k, e in zip(index, reader.fetch(list(index.values())))} == {
        "k1": "first", "k2": "asked otherwise"}
    assert [e.get("id") for _, e in read_entries(tmp_path, "run1")] == [None, "a", "b", "a", "a"]
    with open(part, "a") as stream:  # a corrupt line in the middle: skipped, the lines after it still read
        stream.write('\nnot json\n{"id": "d", "key": "k3", "raw": "after", "finish_reason": "stop"}\n')
    with caplog.at_level(logging.WARNING):
        assert list(ThinkingStore(tmp_path, "run3").index()) == ["k1", "k2", "k3"]
    assert re.search(r"run1\..*\.jsonl:6: corrupt line, not JSON .*skipped, its request is generated again", caplog.text)
    with pytest.raises(ValueError, match=r"run1\..*\.jsonl:6: corrupt line, not JSON"):  # a store that cannot do without it
        list(JsonLinesStore(tmp_path).scan())


def test_vllm_sampling_maps_every_option_one_to_one():
    config = GenerateConfig(backend="vllm", temperature=0.7, top_p=0.8, max_new_tokens=123, stop=["</think>", "<|im_end|>"], seed=5)
    options = sampling_options(config, Request("doc1"))
    assert options["temperature"] == 0.7 and options["top_p"] == 0.8 and options["max_tokens"] == 123
    assert options["stop"] == ["</think>", "<|im_end|>"] and options["n"] == 1
    assert options["seed"] == sampling_options(config, Request("doc1"))["seed"] != sampling_options(config, Request("doc2"))["seed"]
    assert options["seed"] != sampling_options(config.model_copy(update={"seed": 6}), Request("doc1"))["seed"]
    assert sampling_options(config, Request("doc1", max_new_tokens=7))["max_tokens"] == 7  # a per-class budget
    output = SimpleNamespace(prompt_token_ids=[1, 2, 3], outputs=[SimpleNamespace(text="t", token_ids=[7, 8], finish_reason="length")])
    assert vars(completion("doc1", output)) == {"id": "doc1", "text": "t", "finish_reason": "length", "prompt_tokens": 3,
                                                        "output_tokens": 2, "retries": 0, "error": None, "server": None, "failed_at": [],
                                                        "characters_replaced": 0, "over_budget": False, "usage_invalid": False}


def test_vllm_is_imported_only_when_chosen():
    """Building the backend imports nothing of vLLM, installed or not; only its setup does, so where vLLM is
    missing, choosing it fails there, naming the module."""
    code = ("import sys; from tpt.stages import build_stages; from tpt.generate.backends import build_backend;"
            "from tpt.config import GenerateConfig; b = build_backend(GenerateConfig(backend='vllm')); print('vllm' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ModuleNotFoundError, match="vllm"):
            build_backend(GenerateConfig(backend="vllm")).setup()


def test_sample_text_is_document_separator_thinking():
    record = Record("a", "web", "The document.").with_thinking("The thinking.", "\n\n", thinking_flags=["truncated"])
    assert mds_sample(record, ["id", "text", "thinking", "thinking_flags"]) == {
        "id": "a", "text": "The document.\n\nThe thinking.", "thinking": "The thinking.", "thinking_flags": "truncated"}
    assert mds_sample(Record("b", "web", "Plain."), ["text"])["text"] == "Plain."
