"""The training data path on shards the pipeline wrote: packing, source weights, mid-epoch resumption, config checks."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from streaming import StreamingDataset
from torch.utils.data import DataLoader

from tpt.config_file import ConfigError, apply_override
from tpt.train.config import DatasetConfig, TokenizerConfig, load_train_config
from tpt.train.data import START, DocumentStream, PackedSequences, build_documents, build_streams, pack, shuffle_blocks
from tpt.train.model import build_tokenizer
from tpt.train.streams import read_streams

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
    assert all(len(tokens) == len(own) == 128 for tokens, own, _ in sequences)
    assert len(sequences) == len(stream) // 128
    np.testing.assert_array_equal(np.concatenate([t for t, _, _ in sequences]), stream[:full])
    np.testing.assert_array_equal(np.concatenate([o for _, o, _ in sequences]), owners[:full])


def test_pack_continues_from_any_sequences_end():
    """Packing restarted at a sequence's end, from that document on, gives exactly the sequences that followed it."""
    rng = np.random.default_rng(1)
    lengths = [128, 100, 28, *rng.integers(1, 300, size=60)]  # the first two sequences end where a document ends
    documents = [{"index": i, "tokens": rng.integers(0, 1000, size=int(n))} for i, n in enumerate(lengths)]
    sequences = list(pack(documents, 128))
    assert any(end[1] == 0 for _, _, end in sequences) and any(end[1] for _, _, end in sequences)  # both kinds of end
    for k, (_, _, end) in enumerate(sequences):
        continued = list(pack(documents[end[0]:], 128, end))
        assert len(continued) == len(sequences) - k - 1, k
        for (tokens, owners, after), (expected, expected_owners, expected_after) in zip(continued, sequences[k + 1:]):
            np.testing.assert_array_equal(tokens, expected)
            np.testing.assert_array_equal(owners, expected_owners)
            assert after == expected_after


def test_shuffle_blocks_continue_from_any_position():
    """Blocks of 4 in a seeded order: restarted from the position after any sequence (re-packing from the block's
    start), they give the sequences that followed it, and each block holds the same sequences as in order."""
    rng = np.random.default_rng(2)
    documents = [{"index": i, "tokens": rng.integers(0, 1000, size=int(n))} for i, n in enumerate(rng.integers(1, 300, size=60))]

    def order_of(block: int, length: int) -> np.ndarray:
        return np.random.default_rng([17, block]).permutation(length)

    def run(start):
        return list(shuffle_blocks(pack(documents[start.document:], 64, (start.document, start.offset)), 4, start, order_of))

    shuffled, in_order = run(START), list(pack(documents, 64))
    assert len(shuffled) == len(in_order) and len(in_order) % 4  # a last, partial block too
    firsts = [int(tokens[0]) for tokens, _, _ in shuffled]
    assert firsts != [int(tokens[0]) for tokens, _, _ in in_order]
    assert all(sorted(firsts[b:b + 4]) == sorted(int(t[0]) for t, _, _ in in_order[b:b + 4]) for b in range(0, len(firsts), 4))
    for k, (_, _, after) in enumerate(shuffled):
        assert [int(t[0]) for t, _, _ in run(after)] == firsts[k + 1:], (k, after)


def test_packed_epoch_is_the_documents_tokens_plus_eos(demo_run, streams_file, tokenizer):
    documents = build_documents(DatasetConfig(streams=streams_file), tokenizer, device_batch_size=4, seed=17)
    seen: list[dict] = []
    sequences = list(pack((seen.append(d) or d for d in documents), 256))
    assert len(seen) == demo_run[1]["totals"]["written"]  # proportions 2:1:1 over the whole demo: one epoch, every sample
    expected = np.concatenate([np.append(tokenizer(_text_of(documents, d["index"]), add_special_tokens=False)["input_ids"],
                                         tokenizer.eos_token_id)
                               for d in seen])
    packed = np.concatenate([tokens for tokens, _, _ in sequences])
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


class CountingStream(DocumentStream):
    """A DocumentStream that counts the samples it reads and tokenizes: how much of the epoch a resume re-reads."""

    tokenized = 0

    def tokens_of(self, sample, sample_id):
        CountingStream.tokenized += 1
        return super().tokens_of(sample, sample_id)


def loader(streams_file, tokenizer, workers, state=None, shuffle_buffer=16, epoch_size=None):
    """PackedSequences over the demo shards as the trainer builds them, and an iterator over its batches that
    passes each through `consume` as Composer's batch transform does."""
    documents = CountingStream(tokenizer=tokenizer, streams=build_streams(streams_file, 60), batch_size=4, shuffle_seed=17,
                               epoch_size=epoch_size)
    dataset = PackedSequences(documents, 256, 4, shuffle_buffer=shuffle_buffer, seed=17, num_workers=workers)
    if state is not None:
        dataset.load_state_dict(state)
    return dataset, map(dataset.consume, DataLoader(dataset, batch_size=4, num_workers=workers, drop_last=True))


@pytest.mark.parametrize("workers,batches", [(0, 5), (2, 4), (2, 3)])
def test_resume_mid_epoch_continues_the_same_sequences(streams_file, tokenizer, workers, batches):
    """After any batch, even one that is not a multiple of num_workers (PyTorch then restarts at worker 0), a
    reloaded loader gives exactly the batches the first one gave next, to the end of the epoch and into the next."""
    dataset, batches_of = loader(streams_file, tokenizer, workers)
    uninterrupted = [next(batches_of) for _ in range(batches)]
    state = dataset.state_dict(batches * 4, True)
    uninterrupted += list(batches_of) + list(map(dataset.consume, DataLoader(dataset, batch_size=4, num_workers=workers, drop_last=True)))
    del dataset, batches_of
    gc.collect()  # streaming allows one live dataset per local folder
    dataset, resumed = loader(streams_file, tokenizer, workers, state)
    resumed = list(resumed) + list(map(dataset.consume, DataLoader(dataset, batch_size=4, num_workers=workers, drop_last=True)))
    assert len(resumed) == len(uninterrupted) - batches > 4
    for got, expected in zip(resumed, uninterrupted[batches:]):
        assert torch.equal(got["input_ids"], expected["input_ids"])
        assert torch.equal(got["sample_index"], expected["sample_index"])


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_late_in_the_epoch_rereads_one_block_not_the_epoch(streams_file, tokenizer, workers):
    """A resume after 151 batches of a long epoch: streaming drops the samples every worker is past, and each worker
    tokenizes at most its shuffle block's documents again before the first batch, which is the one that came next."""
    dataset, batches_of = loader(streams_file, tokenizer, workers, shuffle_buffer=8, epoch_size=2000)
    for _ in range(151):
        next(batches_of)
    state = dataset.state_dict(151 * 4, True)
    expected = next(batches_of)
    del dataset, batches_of
    gc.collect()
    CountingStream.tokenized = 0
    _, resumed = loader(streams_file, tokenizer, workers, state, shuffle_buffer=8, epoch_size=2000)
    first = next(resumed)
    assert torch.equal(first["input_ids"], expected["input_ids"])
    assert state["dropped"] >= 500 // max(1, workers)  # about 1,200 documents trained on, all workers together
    if not workers:  # the loader's own process: what it read is counted here
        assert 0 < CountingStream.tokenized < 40, CountingStream.tokenized  # one block: 8 sequences of 256 tokens


def test_a_checkpoint_the_loader_cannot_continue_exactly_is_refused(streams_file, tokenizer):
    dataset, batches_of = loader(streams_file, tokenizer, 0)
    next(batches_of)
    state = dataset.state_dict(4, True)
    del batches_of
    with pytest.raises(ValueError, match=r"written by 1 devices x 1 loader workers x 4 sequences per device batch; this run has 1 x 2 x 4"):
        PackedSequences(dataset.documents, 256, 4, shuffle_buffer=16, seed=17, num_workers=2).load_state_dict(state)
    with pytest.raises(ValueError, match="no loader positions: it was written by an older tpt"):
        dataset.load_state_dict({"documents": state["documents"], "sequences": 4})


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


def test_compressed_shards_are_decompressed_outside_the_run_folder(tmp_path, tokenizer, monkeypatch):
    """Training on a run folder writes nothing into it (it may be read-only storage, or shared): streaming's
    decompressed copies go to a cache under the temporary folder, named by the shards they hold."""
    import tempfile

    from tests.conftest import write_jsonl
    from tpt.cli import main as tpt

    write_jsonl(tmp_path / "docs.jsonl", [{"id": f"d{i}", "text": f"Document {i} about the tides."} for i in range(30)])
    (tmp_path / "config.yaml").write_text("sources: [{name: web, path: docs.jsonl}]\noutput: {parts: 2, compression: zstd}\n")
    out = tmp_path / "run"
    assert tpt(["run", str(tmp_path / "config.yaml"), "--output", str(out), "--workers", "1"]) == 0
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    before = sorted(p for p in out.rglob("*"))
    documents = build_documents(DatasetConfig(streams=str(out / "streams.yaml")), tokenizer, device_batch_size=1, seed=17)
    assert sorted(StreamingDataset.get_item(documents, i)["id"] for i in range(documents.num_samples)) == sorted(f"d{i}" for i in range(30))
    assert sorted(p for p in out.rglob("*")) == before
    assert list((tmp_path / "tmp").rglob("shard.*.mds"))  # decompressed there
    del documents
    gc.collect()
