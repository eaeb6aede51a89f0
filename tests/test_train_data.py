"""The training data path on shards the pipeline wrote: packing, source weights, mid-epoch resumption, config checks."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from streaming import StreamingDataset
from torch.utils.data import DataLoader

from tpt.config import ConfigError
from tpt.train.config import DatasetConfig, TokenizerConfig, apply_override, load_train_config
from tpt.train.data import PackedSequences, build_documents, pack, read_streams
from tpt.train.model import build_tokenizer

from .conftest import ROOT

TINY = ROOT / "composer_yamls" / "tiny-cpu.yaml"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(TokenizerConfig(name="embedded", kwargs={"eos_token": "<|endoftext|>"}))


@pytest.fixture(scope="module")
def streams_file(demo_run):
    config, _ = demo_run
    return f"{config.output.dir}/streams.yaml"


def test_pack_keeps_every_token_once_in_order():
    rng = np.random.default_rng(0)
    documents = [{"index": i, "tokens": rng.integers(0, 1000, size=int(n))} for i, n in enumerate(rng.integers(1, 700, size=50))]
    sequences = list(pack(documents, 128))
    stream = np.concatenate([d["tokens"] for d in documents])
    owners = np.concatenate([np.full(len(d["tokens"]), d["index"]) for d in documents])
    full = len(stream) // 128 * 128
    assert all(len(tokens) == len(own) == 128 for tokens, own in sequences)
    assert len(sequences) == len(stream) // 128
    np.testing.assert_array_equal(np.concatenate([t for t, _ in sequences]), stream[:full])
    np.testing.assert_array_equal(np.concatenate([o for _, o in sequences]), owners[:full])


def test_packed_epoch_is_the_documents_tokens_plus_eos(demo_run, streams_file, tokenizer):
    documents = build_documents(DatasetConfig(streams=streams_file), tokenizer, device_batch_size=4, seed=17)
    seen: list[dict] = []
    sequences = list(pack((seen.append(d) or d for d in documents), 256))
    assert len(seen) == demo_run[1]["totals"]["written"]  # proportions 2:1:1 over the whole demo: one epoch, every sample
    expected = np.concatenate([np.append(tokenizer(_text_of(documents, d["index"]), add_special_tokens=False)["input_ids"],
                                         tokenizer.eos_token_id)
                               for d in seen])
    packed = np.concatenate([tokens for tokens, _ in sequences])
    assert len(expected) - 256 < len(packed) <= len(expected)
    np.testing.assert_array_equal(packed, expected[:len(packed)])
    assert all(d["tokens"][-1] == tokenizer.eos_token_id for d in seen)  # every document ends with EOS, the tail's too


def _text_of(documents, index: int) -> str:
    """The training text of a sample, read by the plain StreamingDataset (not the tokenizing subclass)."""
    return StreamingDataset.get_item(documents, index)["text"]


def test_samples_per_source_follow_the_proportions(streams_file, tokenizer):
    documents = build_documents(DatasetConfig(streams=streams_file), tokenizer, device_batch_size=4, seed=17)
    proportions = {name: s["proportion"] for name, s in read_streams(streams_file).items()}
    bounds = np.cumsum([0, *documents.samples_per_stream])
    counts = np.bincount(np.searchsorted(bounds, [d["index"] for d in documents], side="right") - 1, minlength=len(proportions))
    for name, count in zip(proportions, counts):
        assert abs(count - proportions[name] * counts.sum()) <= 1, (name, count, counts)
    assert counts.tolist() != documents.samples_per_stream.tolist()  # the 2:1:1 weights changed the natural mix


@pytest.mark.parametrize("workers,batches", [(0, 5), (2, 4)])
def test_resume_mid_epoch_continues_the_same_sequences(streams_file, tokenizer, workers, batches):
    dataset_config = DatasetConfig(streams=streams_file, shuffle_buffer=16)

    def loader(state=None):
        dataset = PackedSequences(build_documents(dataset_config, tokenizer, 4, seed=17), 256, 4, shuffle_buffer=16, seed=17)
        if state is not None:
            dataset.load_state_dict(state)
        return dataset, iter(DataLoader(dataset, batch_size=4, num_workers=workers))

    dataset, batches_of = loader()
    uninterrupted = [next(batches_of)["input_ids"] for _ in range(batches + 4)]
    state = dataset.state_dict(batches * 4, True)
    del dataset, batches_of
    gc.collect()  # streaming allows one live dataset per local folder
    _, resumed = loader(state)
    for expected in uninterrupted[batches:]:
        assert torch.equal(next(resumed)["input_ids"], expected)


def test_overrides_keep_yaml_types():
    raw = {"train_loader": {"dataset": {}}}
    apply_override(raw, "train_loader.dataset.shuffle=false")
    apply_override(raw, "max_duration=10ba")
    apply_override(raw, "optimizer.betas=[0.9, 0.95]")
    assert raw == {"train_loader": {"dataset": {"shuffle": False}}, "max_duration": "10ba", "optimizer": {"betas": [0.9, 0.95]}}
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        apply_override(raw, "max_duration")


def test_config_typo_names_the_key_and_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"train_loader.dataset.shufle: unknown key; allowed keys here: streams, shuffle"):
        load_train_config(TINY, ["train_loader.dataset.shufle=true"])


def test_a_tokens_column_is_used_as_is_and_a_shard_without_text_is_named(tmp_path, tokenizer):
    from streaming import MDSWriter

    rows = [np.arange(start, start + n, dtype=np.int32) for start, n in ((100, 300), (1000, 250))]
    with MDSWriter(out=str(tmp_path / "tokens"), columns={"id": "str", "tokens": "ndarray:int32"}) as writer:
        for i, tokens in enumerate(rows):
            writer.write({"id": f"doc{i}", "tokens": tokens})
    documents = build_documents(DatasetConfig(streams={"pretokenized": {"local": str(tmp_path / "tokens")}}, shuffle=False),
                                tokenizer, device_batch_size=1, seed=0)
    assert [d["tokens"].tolist() for d in documents] == [[*r.tolist(), tokenizer.eos_token_id] for r in rows]
    del documents
    gc.collect()

    with MDSWriter(out=str(tmp_path / "ids"), columns={"id": "str"}) as writer:
        writer.write({"id": "doc-without-text"})
    documents = build_documents(DatasetConfig(streams={"bare": {"local": str(tmp_path / "ids")}}), tokenizer, 1, seed=0)
    with pytest.raises(KeyError, match="id 'doc-without-text'.*no `text` or `tokens` column"):
        list(documents)
