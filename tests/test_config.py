"""The config is validated on load; every error names the key and what is allowed."""

from __future__ import annotations

import pytest

from tests.conftest import DEMO_CONFIG, ROOT
from tpt.config import load_config, parse_size
from tpt.config_file import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_demo_config_loads_with_defaults():
    demo = load_config(DEMO_CONFIG)
    assert [s.name for s in demo.sources] == ["reference", "books", "web"]
    assert demo.classify is not None and demo.generate is not None
    assert (demo.generate.temperature, demo.generate.top_p) == (0.6, 0.9)
    assert demo.truncate.max_doc_bytes == 8 * 2**20
    assert demo.output.compression == "zstd"
    assert parse_size(demo.output.size_limit) == 64_000_000


def test_relative_source_paths_resolve_against_the_config_file(tmp_path):
    config = load_config(write(tmp_path, "sources: [{name: a, path: data/a.jsonl}]"))
    assert config.sources[0].path == str(tmp_path / "data" / "a.jsonl")


def test_unknown_key_names_the_key_and_the_allowed_keys(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "sources: [{name: a, path: a.jsonl, wieght: 2}]"))
    message = str(error.value)
    assert "sources.0.wieght: unknown key" in message
    assert "weight" in message and "text_field" in message


def test_unknown_section_lists_the_sections(tmp_path):
    with pytest.raises(ConfigError, match=r"truncation: unknown key; allowed keys here: "
                                          r"sources, tokenizer, truncate, output, dedup, datatrove, generate, classify"):
        load_config(write(tmp_path, "sources: [{name: a, path: a.jsonl}]\ntruncation: {max_doc_tokens: 10}"))


def test_bad_literal_lists_the_allowed_values(tmp_path):
    with pytest.raises(ConfigError, match=r"sources.0.format: .*'jsonl' or 'parquet'"):
        load_config(write(tmp_path, "sources: [{name: a, path: a.csv, format: csv}]"))


def test_each_backend_reads_its_own_section(tmp_path):
    config = load_config(write(tmp_path, "sources: [{name: a, path: a.jsonl}]\ngenerate:\n  backend: openai\n"
                                         "  openai: {base_urls: [http://gpu-1:8000/v1], retries: 2}\n  store: {flush_every_docs: 1}"))
    assert (config.generate.openai.base_urls, config.generate.openai.retries) == (["http://gpu-1:8000/v1"], 2)
    assert config.generate.store.flush_every_docs == 1 and config.generate.transformers.micro_batch_size == 16


def test_a_key_from_before_the_backend_sections_still_works_and_names_its_new_place(tmp_path, caplog):
    old = "sources: [{name: a, path: a.jsonl}]\ngenerate: {base_urls: [http://gpu-1:8000/v1], micro_batch_size: 4}"
    config = load_config(write(tmp_path, old))
    assert config.generate.openai.base_urls == ["http://gpu-1:8000/v1"] and config.generate.transformers.micro_batch_size == 4
    assert "generate.base_urls is now generate.openai.base_urls" in caplog.text
    with pytest.raises(ConfigError, match="both retries and openai.retries are set; keep openai.retries"):
        load_config(write(tmp_path, "sources: [{name: a, path: a.jsonl}]\ngenerate: {retries: 1, openai: {retries: 2}}"))
    with pytest.raises(ConfigError, match=r"generate.openai.micro_batch_size: unknown key"):
        load_config(write(tmp_path, "sources: [{name: a, path: a.jsonl}]\ngenerate: {openai: {micro_batch_size: 2}}"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sources: []", "sources: List should have at least 1 item"),
        ("sources: [{name: a, path: x}, {name: a, path: y}]", "repeated: a"),
        ("sources: [{name: a, path: x, weight: 0}]", "sources.0.weight: Input should be greater than 0"),
        ("sources: [{name: a, path: x}]\noutput: {size_limit: lots}", "not a size: 'lots'"),
        ("sources: [{name: a, path: x}]\noutput: {columns: [text_len]}", "unknown columns ['text_len']"),
        ("- just a list", "expected a mapping of sections"),
        ("sources: [unclosed", "not valid YAML"),
    ],
)
def test_invalid_configs_are_refused_with_the_reason(tmp_path, text, expected):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    assert expected in str(error.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("value", "size"), [(1024, 1024), ("64mb", 64_000_000), ("1GiB", 2**30), ("1.5kb", 1500)])
def test_parse_size(value, size):
    assert parse_size(value) == size


@pytest.mark.parametrize(("text", "expected"), [
    ("sources: [{name: a, path: x, weight: .inf}]", "sources.0.weight: Input should be a finite number"),
    ("sources: [{name: a, path: x, weight: .nan}]", "sources.0.weight: Input should be a finite number"),
    ("sources: [{name: a, path: x}]\ngenerate: {temperature: .inf}", "generate.temperature: Input should be a finite number"),
    ("sources: [{name: a, path: x}]\ngenerate: {openai: {timeout: .nan}}", "generate.openai.timeout: Input should be a finite number"),
    ("sources: [{name: a, path: x}]\noutput: {size_limit: -1}", "output.size_limit: Value error, a shard size must be"),
    ("sources: [{name: a, path: x}]\noutput: {size_limit: 0b}", "output.size_limit: Value error, a shard size must be"),
    ("sources: [{name: a, path: x}]\noutput: {size_limit: 100000000000000000000000}", "output.size_limit: Value error, a shard"),
    ("sources: [{name: a, path: x}]\noutput: {size_limit: 9000tb}", "output.size_limit: Value error, a shard size must be"),
    ("sources: [{name: ., path: x}]", "sources.0.name: Value error, '.' cannot name a folder of its own"),
    ("sources: [{name: .., path: x}]", "sources.0.name: Value error, '..' cannot name a folder of its own"),
    ("sources: [{name: web, path: x}, {name: Web, path: y}]", "differ only in case: Web, web"),
    ("sources: [{name: a, path: x, weight: 1, weight: 2}]", "key 'weight' is given twice in one mapping (lines 1 and 1)"),
    ("sources: [{name: a, path: x}]\noutput: {parts: 2}\noutput: {parts: 3}", "key 'output' is given twice in one mapping (lines 2 and 3)"),
    ("sources: " + "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("sources: [{name: a, path: x, id_field: " + "[" * 40 + "]" * 40 + "}]", "sources.0.id_field: nested more than 32 levels deep"),
])
def test_values_that_cannot_work_are_refused_with_the_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    assert expected in str(error.value)


def test_the_largest_shard_size_an_mds_shard_can_index_is_taken(tmp_path):
    config = load_config(write(tmp_path, "sources: [{name: a, path: x}]\noutput: {size_limit: 4GiB}"))
    assert parse_size(config.output.size_limit) == 2**32


def test_a_key_may_override_what_a_yaml_merge_brings(tmp_path):
    assert load_config(write(tmp_path, "sources: [{<<: {name: a, path: x}, name: b}]")).sources[0].name == "b"


def test_every_relative_path_in_a_config_is_relative_to_the_config_file(tmp_path, monkeypatch):
    """One rule: sources, output.dir, datatrove.logging_dir, the tokenizer, the model, the prompt, the taxonomy and
    the classifier models given as relative paths are read beside the config file, wherever tpt runs from."""
    folder = tmp_path / "configs"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    config = load_config(write(folder, "sources: [{name: a, path: a.jsonl}]\ntokenizer: tok\noutput: {dir: out}\n"
                                       "datatrove: {logging_dir: logs}\n"
                                       "generate: {model: teacher, prompt: prompts/mine.txt}\n"
                                       "classify: {taxonomy: taxonomy.yaml, models: {domain: models, audience: starter}}\n"))
    assert config.sources[0].path == str(folder / "a.jsonl")
    assert (config.output.dir, config.datatrove.logging_dir) == (str(folder / "out"), str(folder / "logs"))
    assert (config.tokenizer, config.generate.model, config.generate.prompt) == (
        str(folder / "tok"), str(folder / "teacher"), str(folder / "prompts" / "mine.txt"))
    assert (config.classify.taxonomy, config.classify.models.domain) == (str(folder / "taxonomy.yaml"), str(folder / "models"))
    assert (config.classify.models.audience, config.classify.models.reasoning) == ("starter", "starter")  # names, not paths


def test_names_urls_and_absolute_paths_are_kept_as_they_are(tmp_path):
    config = load_config(write(tmp_path, "sources: [{name: a, path: 'gs://b/a.jsonl'}]\ntokenizer: embedded\n"
                                         f"output: {{dir: {tmp_path / 'abs'}}}\n"
                                         "generate: {backend: openai, model: Qwen/Qwen3-8B, prompt: random_focus}\n"))
    assert (config.sources[0].path, config.tokenizer, config.output.dir) == ("gs://b/a.jsonl", "embedded", str(tmp_path / "abs"))
    assert (config.generate.model, config.generate.prompt) == ("Qwen/Qwen3-8B", "random_focus")


def test_a_path_found_only_in_the_current_folder_still_works_with_a_warning(tmp_path, monkeypatch, caplog):
    """Configs written when output.dir and the model paths were read from the current folder keep working
    (an existing run folder keeps its thinking), and the warning names the rule."""
    folder = tmp_path / "configs"
    folder.mkdir()
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    config = load_config(write(folder, "sources: [{name: a, path: a.jsonl}]\noutput: {dir: out}\n"))
    assert config.output.dir == str(tmp_path / "out")
    assert "output.dir: out is not beside the config file" in caplog.text and "relative to the config file" in caplog.text


def test_every_command_that_reads_a_config_takes_key_value_overrides_on_one_path(tmp_path, capsys):
    from tpt.cli import main
    from tpt.train.config import load_train_config
    from tpt.train.experiment import load_experiment

    config = write(tmp_path, "sources: [{name: a, path: a.jsonl}]")
    loaded = load_config(config, ["truncate.max_doc_tokens=512", "dedup.minhash.jaccard_threshold=0.9", "output.parts=2"])
    assert (loaded.truncate.max_doc_tokens, loaded.dedup.minhash.jaccard_threshold, loaded.output.parts) == (512, 0.9, 2)
    with pytest.raises(ConfigError, match=r"truncate.max_doc_tokns: unknown key; allowed keys here: max_doc_tokens"):
        load_config(config, ["truncate.max_doc_tokns=512"])
    assert load_train_config(ROOT / "composer_yamls" / "tiny-cpu.yaml", ["max_seq_len=64"]).max_seq_len == 64
    assert load_experiment(ROOT / "configs" / "experiment-cpu.yaml", ["tokens=4096"]).tokens == 4096
    for command, options in ((["run", str(config)], []), (["label", str(config)], ["--sample", "1", "--output", str(tmp_path)])):
        assert main([*command, "truncate.max_doc_tokens=0", *options]) == 2  # validated as if it were in the file
        assert "truncate.max_doc_tokens: Input should be greater than 0" in capsys.readouterr().err
    assert main(["experiment", str(ROOT / "configs" / "experiment-cpu.yaml"), "eval_points=0"]) == 2
    assert "eval_points: Input should be greater than 0" in capsys.readouterr().err
