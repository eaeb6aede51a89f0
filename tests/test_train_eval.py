"""Evaluation in the training YAML: held-out raw documents and GSM8K scored during training, logged per eval set."""

from __future__ import annotations

import gc
import json
import math

import pytest
import torch
from composer.loggers import InMemoryLogger
from streaming import StreamingDataset

from tpt import cli
from tpt.config_file import ConfigError
from tpt.train.config import load_train_config
from tpt.train.evaluate import read_eval_log
from tpt.train.heldout import is_heldout, read_documents, write_heldout
from tpt.train.tasks import extract, normalize, prompt_of, read_problems
from tpt.train.trainer import train

from .conftest import ROOT, write_jsonl

TINY = ROOT / "composer_yamls" / "tiny-cpu.yaml"
GSM8K = ROOT / "data" / "gsm8k" / "test.jsonl"
BATCHES = 8
PROBLEMS = 6


@pytest.fixture(scope="module")
def evaluated(demo_run, tmp_path_factory):
    """The tiny YAML as shipped (its held-out set, its GSM8K task), shortened, plus greedy answers."""
    config, _ = demo_run
    folder = tmp_path_factory.mktemp("evaluated")
    overrides = [f"train_loader.dataset.streams={config.output.dir}/streams.yaml", f"max_duration={BATCHES}ba", "eval_interval=4ba",
                 "eval_subset_num_batches=3", f"save_folder={folder}/checkpoints", "save_interval=100ba", "autoresume=false",
                 f"callbacks.sample_log.path={folder}/samples.jsonl", f"callbacks.eval_log.path={folder}/eval.jsonl",
                 "loggers.inmemory={}", "python_log_level=warning", "optimizer.lr=1.0e-2", "scheduler.t_warmup=1ba",
                 f"eval_tasks=[{{label: gsm8k, path: {GSM8K}, limit: {PROBLEMS}, batch_size: 4, generate: true, max_new_tokens: 8}}]"]
    trainer = train(load_train_config(TINY, overrides))
    memory = next(d for d in trainer.logger.destinations if isinstance(d, InMemoryLogger))
    series = {name: [(int(time.batch), float(value)) for time, value in points]
              for name, points in memory.data.items() if name.startswith("metrics/")}
    model = trainer.state.model.model
    tokenizer = trainer.state.model.tokenizer
    del trainer
    gc.collect()  # streaming allows one live dataset per local folder
    return folder, series, model, tokenizer


def test_heldout_documents_are_scored_at_start_every_interval_and_end(evaluated):
    _, series, _, _ = evaluated
    entropy, perplexity = series["metrics/heldout/LanguageCrossEntropy"], series["metrics/heldout/LanguagePerplexity"]
    assert [batch for batch, _ in entropy] == [0, 4, 8]  # eval_first, then every eval_interval
    assert entropy[0][1] == pytest.approx(math.log(49152), abs=0.3)  # the untrained model: uniform over the vocabulary
    assert entropy[-1][1] < entropy[0][1] - 0.3  # it learned something that carries over to unseen text
    for (_, ce), (_, ppl) in zip(entropy, perplexity):
        assert ppl == pytest.approx(math.exp(ce), rel=1e-3)


def test_eval_log_has_every_set_against_training_tokens(evaluated):
    folder, series, _, _ = evaluated
    points = read_eval_log(folder / "eval.jsonl")
    assert {(p["label"], p["batch"], p["tokens"]) for p in points} == {
        (label, batch, batch * 4 * 256) for label in ("heldout", "gsm8k", "gsm8k/greedy") for batch in (0, 4, 8)}
    logged = {(p["label"], p["batch"]): p for p in points}
    for name, values in series.items():
        label, metric = name.removeprefix("metrics/").rsplit("/", 1)
        assert [logged[label, batch][metric] for batch, _ in values] == pytest.approx([value for _, value in values])


def test_answer_loglikelihood_is_the_sum_over_the_answer_tokens(evaluated):
    """Recomputed one problem at a time, unpadded, straight from the HF model: padding, masking and shifting are right."""
    _, series, model, tokenizer = evaluated
    total = 0.0
    for problem in read_problems(GSM8K, PROBLEMS):
        context = prompt_of(problem["question"], [])
        whole = tokenizer(f"{context} {problem['answer']}")["input_ids"]  # with the BOS the tokenizer adds, as lm-eval does
        start = len(tokenizer(context)["input_ids"])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), dim=-1)
        total += sum(float(logprobs[i - 1, whole[i]]) for i in range(start, len(whole)))
    assert series["metrics/gsm8k/AnswerLogLikelihood"][-1][1] == pytest.approx(total / PROBLEMS, rel=1e-4)
    exact = [value for _, value in series["metrics/gsm8k/greedy/ExactMatchStrict"]]
    assert len(exact) == 3 and all(0.0 <= value <= 1.0 for value in exact)


@pytest.mark.parametrize("generation,strict,flexible", [
    (" She has 3 + 4 = 7.\n#### 1,234\n\nQuestion: next", "1234", "1234"),
    (" It costs $18.\nQuestion: #### 5", "[invalid]", "18"),  # nothing after the stop string counts
    (" no number at all", "[invalid]", "[invalid]"),
])
def test_answers_are_extracted_as_lm_eval_does(generation, strict, flexible):
    assert normalize(extract(generation, flexible=False)) == strict.lower()
    assert normalize(extract(generation, flexible=True)) == flexible.lower()
    assert normalize("Janet sells 9 eggs.\n#### 1,234") == "1234"


def test_heldout_writer_reads_back_and_sets_bad_rows_aside(tmp_path):
    rows = [{"id": "a", "question": "Q1?", "answer": "A1"}, "{not json", {"id": "b", "question": "Q2?"},
            {"id": "a", "question": "again", "answer": "dup"}, {"question": "Q3?", "answer": "A3"}]
    path = write_jsonl(tmp_path / "docs.jsonl", rows)
    counts = __import__("collections").Counter()
    counts.update(write_heldout(read_documents([path], ["question", "answer"], "id", counts), tmp_path / "mds"))
    assert dict(counts) == {"written": 2, "malformed_json": 1, "missing_text": 1, "duplicate_id": 1}
    dataset = StreamingDataset(local=str(tmp_path / "mds"), batch_size=1, shuffle=False)
    assert [(s["id"], s["text"]) for s in dataset] == [("a", "Q1?\nA1"), ("docs:5", "Q3?\nA3")]
    del dataset
    gc.collect()

    empty = write_jsonl(tmp_path / "empty.jsonl", ["[]"])
    with pytest.raises(ValueError, match="no documents to write"):
        write_heldout(read_documents([empty], ["text"], "id", counts), tmp_path / "mds")
    assert json.loads((tmp_path / "mds" / "index.json").read_text())["shards"][0]["samples"] == 2  # the finished set is untouched


def test_shipped_heldout_set_is_gsm8k_test_as_text():
    dataset = StreamingDataset(local=str(ROOT / "data" / "heldout" / "gsm8k-test"), batch_size=1, shuffle=False)
    problems = read_problems(GSM8K)
    assert len(dataset) == len(problems) == 1319
    for index in (0, 700, 1318):
        assert dataset[index]["text"] == f"{problems[index]['question']}\n{problems[index]['answer']}"
    del dataset
    gc.collect()


def test_heldout_share_is_stable_and_near_the_fraction():
    held = [is_heldout(f"doc-{i}", 0.1) for i in range(5000)]
    assert held == [is_heldout(f"doc-{i}", 0.1) for i in range(5000)]
    assert 400 < sum(held) < 600


def test_several_eval_sets_need_labels():
    streams = "{streams: {s: {local: data/heldout/gsm8k-test}}}"
    with pytest.raises(ConfigError, match="each of several eval sets needs a label"):
        load_train_config(TINY, [f"eval_loader=[{{dataset: {streams}}}, {{label: b, dataset: {streams}}}]"])
    config = load_train_config(TINY, [f"eval_loader=[{{label: a, dataset: {streams}}}, {{label: b, dataset: {streams}}}]"])
    assert [loader.label for loader in config.eval_loaders] == ["a", "b"]
    assert not config.eval_loaders[0].dataset.shuffle  # eval sets keep their order unless told otherwise


def test_cli_heldout_names_a_missing_input(tmp_path, capsys):
    assert cli.main(["heldout", str(tmp_path / "out"), str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such JSONL file" in capsys.readouterr().err


# The few-shot examples lm-eval 0.4.13 draws for GSM8K's first three test problems from data/gsm8k/train.jsonl:
# seen by running its ContextSampler (lm_eval/api/samplers.py) with its default few-shot seed, 1234, on these files.
LM_EVAL_FEWSHOT = [[6374, 3610, 957, 61, 742], [7462, 6610, 4769, 286, 5501], [5677, 687, 806, 6279, 2905]]


def test_few_shot_examples_are_drawn_per_question_as_lm_eval_draws_them():
    from tpt.train.config import EvalTaskConfig, TokenizerConfig
    from tpt.train.model import build_tokenizer
    from tpt.train.tasks import task_dataloaders

    tokenizer = build_tokenizer(TokenizerConfig(name="embedded"))
    task = EvalTaskConfig(label="gsm8k", path=str(GSM8K), fewshot_path=str(GSM8K.with_name("train.jsonl")), num_fewshot=5, limit=3)
    scored = task_dataloaders(task, tokenizer, max_seq_len=4096)[""].dataloader.dataset
    train_problems, problems = read_problems(task.fewshot_path), read_problems(GSM8K, 3)
    for (context, _), problem, drawn in zip(scored, problems, LM_EVAL_FEWSHOT):
        expected = prompt_of(problem["question"], [train_problems[i] for i in drawn])
        assert tokenizer.decode(context, skip_special_tokens=True) == expected


def lm_eval_request(task: dict, shots: list[dict], problem: dict) -> tuple[str, str]:
    """The context and target lm-eval 0.4.13 builds from a task file's fields without a chat template
    (api/task.py: fewshot_context and build_qa_turn, construct_requests): every shot is doc_to_text, target_delimiter,
    doc_to_target and fewshot_delimiter, then the problem's doc_to_text; a loglikelihood target is doc_to_target as is."""
    import jinja2

    def render(field: str, doc: dict) -> str:
        return jinja2.Template(task[field], keep_trailing_newline=True).render(**doc)

    shots_text = "".join(render("doc_to_text", shot) + task.get("target_delimiter", " ") + render("doc_to_target", shot)
                         + task.get("fewshot_delimiter", "\n\n") for shot in shots)
    return shots_text + render("doc_to_text", problem), render("doc_to_target", problem)


@pytest.mark.parametrize("name", ["gsm8k_local", "gsm8k_answer_loglik_local"])
def test_the_lm_eval_task_files_ask_what_tpt_scores(name):
    """The shipped task files give lm-eval the prompts tpt scores: one space after `Answer:` in every shot."""
    import yaml

    task = yaml.safe_load((ROOT / "tpt" / "train" / "lm_eval_tasks" / f"{name}.yaml").read_text())
    shots, (problem,) = read_problems(GSM8K.with_name("train.jsonl"), 2), read_problems(GSM8K, 1)
    context, target = lm_eval_request(task, shots, problem)
    assert context == prompt_of(problem["question"], shots) and "Answer:  " not in context
    if task["output_type"] == "loglikelihood":
        assert target == f" {problem['answer']}"  # the target tpt scores, after the context
