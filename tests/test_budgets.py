"""Per-class thinking budgets (`generate.budgets`): the config refuses rules it cannot apply, each class's samples
get its max_new_tokens and samples_per_document (through the think stage with the embedded teacher, at a few
tokens), and `tpt report` / `tpt estimate` show and use them."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest
import yaml
from tokenizers import Tokenizer

from tests.conftest import ROOT, stage_report, think_all, write_jsonl
from tests.test_analysis_stats import write_run
from tests.test_pipeline_beam import read_shards
from tpt.analysis.estimate import write_sample
from tpt.assets import tokenizer_file
from tpt.classify.taxonomy import DEFAULT_PATH
from tpt.cli import main
from tpt.config import load_config
from tpt.config_file import ConfigError
from tpt.generate.budgets import Budget, Budgets
from tpt.generate.prompts import PromptBuilder
from tpt.generate.samples import SampleRules
from tpt.schema import Record, manifest_table
from tpt.stages.think import Think

BUDGETS = """
sources: [{name: web, path: web.jsonl}]
classify: {}
generate:
  max_new_tokens: 3
  stop: []
  budgets:
    - when: {domain: mathematics, reasoning: [intermediate, advanced]}   # every axis named must match; a list: any of
      max_new_tokens: 4
      samples_per_document: 2
    - when: {domain: everyday_life}
      max_new_tokens: 2
    - when: {audience: expert}
      min_confidence: 0.5
      max_new_tokens: 5
"""


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def labelled(id: str, domain: str, reasoning: str = "basic", audience: str = "general_public", score: float = 0.9) -> Record:
    text = {"mathematics": "A prime number has exactly two divisors: one and itself.",
            "everyday_life": "Soak the beans overnight, then simmer them for an hour."}.get(domain, "The city walls were built in 1200.")
    return Record(id, "web", text, domain=domain, domain_score=score, audience=audience, audience_score=score,
                  reasoning=reasoning, reasoning_score=score)


def test_first_matching_rule_wins_else_the_top_level(tmp_path):
    budgets = Budgets(load_config(write(tmp_path, BUDGETS)).generate)
    assert budgets.of(labelled("a", "mathematics", "advanced")) == Budget(4, 2)
    assert budgets.of(labelled("b", "mathematics", "intermediate", audience="expert")) == Budget(4, 2)  # the first rule
    assert budgets.of(labelled("c", "mathematics", "none")) == Budget(3, 1)  # every axis named must match
    assert budgets.of(labelled("d", "everyday_life")) == Budget(2, 1)
    assert budgets.of(labelled("e", "history", audience="expert")) == Budget(5, 1)
    assert budgets.of(labelled("f", "history", audience="expert", score=0.4)) == Budget(3, 1)  # below min_confidence
    assert budgets.of(Record("g", "web", "unclassified")) == Budget(3, 1)
    assert budgets.longest == 5  # the most any rule gives: what bounds a stored answer
    assert Budgets(load_config(write(tmp_path, BUDGETS.replace("max_new_tokens: 3", "max_new_tokens: 9"))).generate).longest == 9


def test_min_confidence_is_at_least(tmp_path):
    """A score exactly at a rule's min_confidence matches it; the next float below does not."""
    budgets = Budgets(load_config(write(tmp_path, BUDGETS)).generate)
    assert budgets.of(labelled("h", "history", audience="expert", score=0.5)) == Budget(5, 1)
    assert budgets.of(labelled("i", "history", audience="expert", score=math.nextafter(0.5, 0))) == Budget(3, 1)


@pytest.mark.parametrize(("rules", "expected"), [
    ("[{when: {domain: maths}, max_new_tokens: 8}]",
     "generate.budgets.0.when.domain: domain label 'maths' is not in the taxonomy; expected one of: mathematics, physics"),
    ("[{when: {domain: history}}, {when: {reasoning: [advanced, expert]}}]",
     "generate.budgets.1.when.reasoning: reasoning label 'expert' is not in the taxonomy; expected one of: none, basic"),
    ("[{when: {topic: history}}]", "generate.budgets.0.when.topic: unknown key; allowed keys here: domain, audience, reasoning"),
    ("[{when: {}}]", "generate.budgets.0.when: Value error, names no axis"),
    ("[{when: {domain: history}, min_confidence: 2}]", "generate.budgets.0.min_confidence: Input should be less than or equal to 1"),
    ("[{when: {domain: history}, max_new_tokens: 0}]", "generate.budgets.0.max_new_tokens: Input should be greater than 0"),
])
def test_rules_that_cannot_apply_are_refused_with_the_key(tmp_path, rules, expected):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, f"sources: [{{name: web, path: web.jsonl}}]\nclassify: {{}}\ngenerate: {{budgets: {rules}}}\n"))
    assert expected in str(error.value)


def test_budgets_without_classify_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"generate.budgets: rules over the classify labels need a `classify` section"):
        load_config(write(tmp_path, BUDGETS.replace("classify: {}\n", "")))


def test_labels_come_from_the_configured_taxonomy(tmp_path):
    taxonomy = yaml.safe_load(DEFAULT_PATH.read_text())
    taxonomy["domain"]["labels"]["maths"] = "Mathematics, spelled short."
    (tmp_path / "taxonomy.yaml").write_text(yaml.safe_dump(taxonomy))
    rules = "[{when: {domain: maths}, max_new_tokens: 8}]"
    config = (f"sources: [{{name: web, path: web.jsonl}}]\nclassify: {{taxonomy: {tmp_path / 'taxonomy.yaml'}}}\n"
              f"generate: {{budgets: {rules}}}\n")
    assert load_config(write(tmp_path, config)).generate.budgets[0].when.labels() == {"domain": ("maths",)}
    with pytest.raises(ConfigError, match=r"classify.taxonomy: .*no such taxonomy file"):
        load_config(write(tmp_path, config.replace("taxonomy.yaml", "missing.yaml")))


@pytest.fixture(scope="module")
def think(tmp_path_factory):
    """The think stage of BUDGETS with the embedded teacher (loaded once), on a fresh store."""
    tmp = tmp_path_factory.mktemp("budgets")
    stage = Think(load_config(write(tmp, BUDGETS)).generate, "embedded", str(tmp / "out"))
    stage.setup()
    yield stage
    stage.close()


def test_the_stage_asks_each_class_for_its_budget(think):
    rules = SampleRules(think.config, Tokenizer.from_file(str(tokenizer_file("embedded"))), PromptBuilder("{document}", chat=True))
    requests = {record.domain + "/" + record.reasoning: [(p.request.id, p.request.max_new_tokens) for p in rules.requests(record)]
                for record in (labelled("m", "mathematics", "advanced"), labelled("e", "everyday_life"), labelled("h", "history"))}
    assert requests == {"mathematics/advanced": [("m#0", 4), ("m#1", 4)], "everyday_life/basic": [("e", 2)], "history/basic": [("h", 3)]}


def test_samples_get_their_class_budget_end_to_end(think, tmp_path):
    records = [labelled("m", "mathematics", "advanced"), labelled("e", "everyday_life"), labelled("h", "history")]
    out = think_all(think, records)
    assert [(s.id, s.thinking_budget) for s in out] == [("m#0", 4), ("m#1", 4), ("e", 2), ("h", 3)]
    for sample in out:
        assert isinstance(sample, Record) and sample.thinking and sample.thinking_tokens <= sample.thinking_budget + 1
    assert manifest_table(out).column("thinking_budget").to_pylist() == [4, 4, 2, 3]


def test_a_changed_budget_regenerates(tmp_path):
    config = load_config(write(tmp_path, BUDGETS)).generate

    def generated(generate) -> int:
        stage = Think(generate, "embedded", str(tmp_path / "out"))
        think_all(stage, [labelled("e", "everyday_life"), labelled("h", "history")])
        stage.close()
        return stage_report(stage, str(tmp_path / "out"))["requests_generated"]

    assert generated(config) == 2
    assert generated(config) == 0  # the same budgets: both resumed
    rules = [config.budgets[0], config.budgets[1].model_copy(update={"max_new_tokens": 3}), config.budgets[2]]
    assert generated(config.model_copy(update={"budgets": rules})) == 1  # only everyday_life's budget changed


def estimate_of(tmp_path, config: str) -> dict:
    """`tpt estimate --from` a hand-made sample run of 4 documents (all kept) over a corpus of 40."""
    write_jsonl(tmp_path / "web.jsonl", [{"id": str(i), "text": f"document {i}"} for i in range(40)])
    rows = {"id": ["m1", "m2", "e1", "e2"], "source": ["web"] * 4, "kept_tokens": [10] * 4,
            "domain": ["mathematics", "mathematics", "everyday_life", "everyday_life"], "domain_score": [0.9] * 4,
            "reasoning": ["advanced", "intermediate", "basic", "none"], "reasoning_score": [0.9] * 4,
            "thinking_tokens": [100, 300, 50, 150], "sample_tokens": [111, 311, 61, 161],
            "finish_reason": ["stop", "length", "stop", "stop"], "thinking_budget": [300] * 4}
    sample = write_run(tmp_path / "sample", rows, {"sources": {"web": {"read": 4}}})
    out = tmp_path / f"estimate-{len(list(tmp_path.glob('estimate-*')))}.json"
    assert main(["estimate", str(write(tmp_path, config)), "--from", str(sample), "--tokens-per-second", "1000",
                 "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_estimate_caps_each_class_at_its_budget_and_counts_its_samples(tmp_path, capsys):
    plain = estimate_of(tmp_path, "sources: [{name: web, path: web.jsonl}]\nclassify: {}\ngenerate: {max_new_tokens: 8192}\n")
    assert plain["sources"]["web"]["samples"] == 40 and plain["totals"]["thinking_tokens"][1] == 40 * 150
    capsys.readouterr()
    budgeted = estimate_of(tmp_path, "sources: [{name: web, path: web.jsonl}]\nclassify: {}\ngenerate:\n  max_new_tokens: 8192\n"
                                     "  budgets:\n    - {when: {domain: mathematics}, samples_per_document: 2}\n"
                                     "    - {when: {domain: everyday_life}, max_new_tokens: 100}\n")
    web = budgeted["sources"]["web"]
    assert web["samples"] == 40 * (2 + 2 + 1 + 1) / 4
    assert web["thinking_tokens"][1] == 40 * (2 * 100 + 2 * 300 + 50 + 100) / 4  # everyday_life's 150 capped at 100
    assert web["training_tokens"][1] == 40 * (2 * 111 + 2 * 311 + 61 + 111) / 4
    assert budgeted["generation"]["gpu_hours"][1] == web["thinking_tokens"][1] / 1000 / 3600
    assert budgeted["budgets"] == [
        {"max_new_tokens": 8192, "samples_per_document": 2, "sample_samples": 2, "cut_shorter": 1, "thinking_tokens": 10 * 800},
        {"max_new_tokens": 100, "samples_per_document": 1, "sample_samples": 2, "cut_shorter": 0, "thinking_tokens": 10 * 150}]
    printed = capsys.readouterr().out
    assert "8,192 tokens × 2" in printed and "100 tokens × 1" in printed
    assert "1 samples ran out of a smaller budget in the sample run" in printed  # m2: cut at 300, the config gives 8192


def test_the_sample_run_draws_one_sample_per_document(tmp_path):
    write_jsonl(tmp_path / "web.jsonl", [{"id": str(i), "text": f"document {i}"} for i in range(5)])
    config = load_config(write(tmp_path, BUDGETS))
    (tmp_path / "sample").mkdir()
    sample, _ = write_sample(config, 2, tmp_path / "sample")
    assert sample.generate.samples_per_document == 1 and [r.samples_per_document for r in sample.generate.budgets] == [None] * 3
    assert [r.max_new_tokens for r in sample.generate.budgets] == [4, 2, 5]


def test_report_shows_each_class_budget(tmp_path):
    rows = {"id": ["a", "b", "c", "d"], "source": ["web"] * 4, "kept_tokens": [10] * 4,
            "domain": ["mathematics", "mathematics", "history", "history"], "thinking_tokens": [8000, 4096, 900, 1000],
            "finish_reason": ["stop", "length", "stop", "stop"], "thinking_budget": [8192, 4096, 1024, 1024]}
    run = write_run(tmp_path / "run", rows)
    assert main(["report", str(run), "--output", str(tmp_path / "report")]) == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    math, history = ({r["class"]: r for r in summary["axes"]["domain"]}[name] for name in ("mathematics", "history"))
    assert (math["budget_min"], math["budget_max"], math["thinking_truncated_rate"]) == (4096, 8192, 0.5)
    assert (history["budget_min"], history["budget_max"], history["thinking_mean"]) == (1024, 1024, 950.0)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<th>budget</th>" in page and "<td>4,096–8,192</td>" in page and "<td>1,024</td>" in page


def test_a_manifest_from_before_budgets_is_still_read(tmp_path, capsys):
    run = write_run(tmp_path / "run", {"id": ["a"], "source": ["web"], "kept_tokens": [10], "thinking_tokens": [5]})
    table = pq.read_table(run / "manifest.parquet")
    pq.write_table(table.drop_columns(["thinking_budget"]), run / "manifest.parquet")
    assert main(["stats", str(run), "--sql", "SELECT count(*) AS n, max(thinking_budget) AS budget FROM samples"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split() == ["1"]  # one sample, its budget null
    assert main(["report", str(run), "--output", str(tmp_path / "report")]) == 0
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["totals"]["budget_max"] is None


@pytest.mark.slow
def test_estimate_sample_run_applies_the_budgets(tmp_path, capsys):
    """`tpt estimate --sample`: a real Beam run (classify, then think with the embedded teacher) draws one sample per
    document at each class's max_new_tokens, and the projection counts the config's samples_per_document."""
    texts = [json.loads(line)["text"][:200] for line in (ROOT / "data" / "demo" / "web.jsonl").read_text().splitlines()[:4]]
    write_jsonl(tmp_path / "web.jsonl", [{"id": f"doc{i}", "text": text} for i, text in enumerate(texts)])
    config = write(tmp_path, "sources: [{name: web, path: web.jsonl}]\ntruncate: {max_doc_tokens: 32}\nclassify: {}\n"
                             "generate:\n  max_new_tokens: 2\n  budgets:\n"
                             "    - {when: {reasoning: [none, basic, intermediate, advanced]},"
                             " max_new_tokens: 3, samples_per_document: 2}\n")
    workdir = tmp_path / "work"
    assert main(["estimate", str(config), "--sample", "3", "--tokens-per-second", "100", "--workdir", str(workdir),
                 "--json", str(tmp_path / "e.json")]) == 0
    manifest = pq.read_table(workdir / "run" / "manifest.parquet").to_pydict()
    assert manifest["id"] == ["doc0", "doc1", "doc2"] and manifest["thinking_budget"] == [3, 3, 3]  # one sample each
    assert all(tokens <= 3 + 1 for tokens in manifest["thinking_tokens"])
    assert [sample["thinking_budget"] for sample in read_shards(workdir / "run", ["web"])] == [3, 3, 3]  # a shard column too
    web = json.loads((tmp_path / "e.json").read_text())["sources"]["web"]
    assert web["documents"] == 4 and web["kept_share"] == 1.0 and web["samples"] == 4 * 2
    assert web["thinking_tokens"][1] == 4 * 2 * sum(manifest["thinking_tokens"]) / 3
