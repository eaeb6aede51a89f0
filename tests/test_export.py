"""`tpt export`: a Composer checkpoint becomes a Hugging Face directory whose model gives the trained model's logits."""

from __future__ import annotations

import gc
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tpt import cli
from tpt.train.config import load_train_config
from tpt.train.export import export
from tpt.train.trainer import train

from .conftest import ROOT

TINY = ROOT / "composer_yamls" / "tiny-cpu.yaml"
TEXT = "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning.<|endoftext|>A robe takes 2 bolts."


@pytest.fixture(scope="module")
def trained(demo_run, tmp_path_factory):
    """Two batches of the tiny YAML (no evaluation), checkpointed at the end."""
    config, _ = demo_run
    folder = tmp_path_factory.mktemp("trained")
    overrides = [f"train_loader.dataset.streams={config.output.dir}/streams.yaml", "max_duration=2ba", "save_interval=2ba",
                 f"save_folder={folder}/checkpoints", "autoresume=false", f"callbacks.sample_log.path={folder}/samples.jsonl",
                 "eval_loader=null", "eval_tasks=[]", "eval_first=false", f"callbacks.eval_log.path={folder}/eval.jsonl",
                 "python_log_level=warning"]
    trainer = train(load_train_config(TINY, overrides))
    model, tokenizer = trainer.state.model.model.eval(), trainer.state.model.tokenizer
    del trainer
    gc.collect()
    return folder / "checkpoints" / "latest-rank0.pt", model, tokenizer


def logits_of(model, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([tokenizer(TEXT)["input_ids"]])).logits


def test_exported_model_gives_the_trained_logits(trained, tmp_path):
    checkpoint, model, tokenizer = trained
    assert cli.main(["export", str(checkpoint), str(tmp_path / "hf")]) == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    exported_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert exported_tokenizer(TEXT)["input_ids"] == tokenizer(TEXT)["input_ids"]
    assert exported_tokenizer.eos_token == "<|endoftext|>"  # the training YAML's document separator, not the instruct default
    torch.testing.assert_close(logits_of(exported, exported_tokenizer), logits_of(model, tokenizer), rtol=0, atol=1e-6)
    untrained = AutoModelForCausalLM.from_config(exported.config).eval()
    assert not torch.allclose(logits_of(untrained, tokenizer), logits_of(model, tokenizer), atol=1e-3)  # the weights came along


def test_sharded_checkpoint_exports_the_same_model(trained, tmp_path):
    """A sharded (.distcp) folder written by torch.distributed.checkpoint from the same state, in one process:
    a stand-in for an FSDP run's sharded checkpoint, which needs several devices to write."""
    import torch.distributed.checkpoint as dcp

    checkpoint, model, tokenizer = trained
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state"]
    dcp.save({"state": {"model": state["model"], "integrations": state["integrations"]}}, checkpoint_id=str(tmp_path / "ep0-ba2"))
    export(tmp_path / "ep0-ba2", tmp_path / "hf", dtype="bfloat16")
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True, torch_dtype="auto").eval()
    assert exported.dtype == torch.bfloat16
    torch.testing.assert_close(logits_of(exported.float(), tokenizer), logits_of(model.to(torch.bfloat16).float(), tokenizer),
                               rtol=0, atol=1e-5)
    model.float()


def test_a_bad_checkpoint_is_one_line_and_leaves_the_previous_export(trained, tmp_path, capsys):
    checkpoint, _, _ = trained
    export(checkpoint, tmp_path / "hf")
    before = (tmp_path / "hf" / "model.safetensors").read_bytes()
    torch.save({"weights": {}}, tmp_path / "other.pt")
    assert cli.main(["export", str(tmp_path / "other.pt"), str(tmp_path / "hf")]) == 2
    assert "other.pt: not a Composer checkpoint" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "missing.pt"), str(tmp_path / "hf")]) == 2
    assert "missing.pt: no such checkpoint" in capsys.readouterr().err
    assert (tmp_path / "hf" / "model.safetensors").read_bytes() == before


def test_export_refuses_a_folder_or_file_it_did_not_write(trained, tmp_path, capsys):
    checkpoint, _, _ = trained
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "own model"}')
    (tmp_path / "file").write_text("a file of that name")
    for target, why in ((mine, "holds files tpt did not write"), (tmp_path / "file", "is a file")):
        assert cli.main(["export", str(checkpoint), str(target)]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith(f"tpt export: error: {target}") and why in error[0]
    assert (mine / "config.json").read_text() == '{"my": "own model"}' and (tmp_path / "file").read_text() == "a file of that name"


def test_the_exported_special_tokens_are_the_tokenizers(trained, tmp_path):
    """generate() stops where training ended documents: config.json and generation_config.json name the eos, bos and
    pad tokens of the tokenizer the run trained with (<|endoftext|>, not the architecture's defaults)."""
    checkpoint, _, _ = trained
    export(checkpoint, tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert tokenizer.eos_token == "<|endoftext|>"
    expected = (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id)
    for name in ("config.json", "generation_config.json"):
        ids = json.loads((tmp_path / "hf" / name).read_text())
        assert (ids.get("eos_token_id"), ids.get("bos_token_id"), ids.get("pad_token_id")) == expected, name
