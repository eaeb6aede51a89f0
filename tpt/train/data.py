"""The training data path: MDS streams -> tokenized samples [d; t] + EOS -> packed `max_seq_len` sequences.

`DocumentStream` is a `StreamingDataset` over the weighted streams whose items
are already tokenized; `PackedSequences` concatenates them and cuts the result
into fixed-length sequences (llm-foundry's ConcatTokensDataset, online). The
order is a function of the seed alone, and a run resumes mid-epoch: the
checkpoint holds streaming's epoch state plus the sequences consumed, and each
loader worker replays its share of the epoch without the model (tokenizing,
never training) up to that point.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from composer.core import DataSpec
from streaming import Stream, StreamingDataset
from streaming.base.world import World
from torch.utils.data import DataLoader, IterableDataset

from tpt.train.config import DatasetConfig, LoaderConfig

log = logging.getLogger(__name__)

STREAM_KEYS = {"local", "remote", "split", "proportion", "repeat", "choose"}


def read_streams(spec: dict[str, dict[str, Any]] | str) -> dict[str, dict[str, Any]]:
    """The `streams` mapping: given inline, or the path of a streams.yaml that `tpt run` wrote."""
    if isinstance(spec, dict):
        return spec
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"train_loader.dataset.streams: no streams file at {path} "
                                "(run `tpt run` first: it writes OUT/streams.yaml)")
    streams = (yaml.safe_load(path.read_text()) or {}).get("streams")
    if not isinstance(streams, dict) or not streams:
        raise ValueError(f"{path}: expected a `streams:` mapping of stream name to {{local, remote, proportion|repeat}}")
    return streams


def build_streams(spec: dict[str, dict[str, Any]] | str, download_timeout: float) -> list[Stream]:
    """One `Stream` per source, each checked before training: its keys, and its local index when it has no remote."""
    streams = []
    for name, stream in read_streams(spec).items():
        unknown = sorted(set(stream) - STREAM_KEYS)
        if unknown:
            raise ValueError(f"stream {name!r}: unknown keys {unknown}; allowed: {', '.join(sorted(STREAM_KEYS))}")
        local, remote = stream.get("local"), stream.get("remote")
        if not local and not remote:
            raise ValueError(f"stream {name!r}: needs `local` (a folder of MDS shards) or `remote`")
        if not remote and not (Path(local) / "index.json").is_file():
            raise FileNotFoundError(f"stream {name!r}: no MDS shards at {local} "
                                    f"(expected {Path(local) / 'index.json'}; run `tpt run` first)")
        streams.append(Stream(download_timeout=download_timeout, **stream))
    return streams


class DocumentStream(StreamingDataset):
    """The weighted streams' samples, each as its training tokens: the `text` column tokenized, EOS appended.

    The pipeline writes the training sample [d; t] (document, separator, thinking)
    as `text`, so this is the whole sample. Tokenizing here, in the loader workers,
    keeps the shards tokenizer-free: the same shards train any model. A `tokens`
    column, when the shards have one, is used as is.
    """

    def __init__(self, *, tokenizer: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.eos_token_id = tokenizer.eos_token_id

    def get_item(self, sample_id: int, retry: int = 7) -> dict[str, Any]:
        sample = super().get_item(sample_id, retry)
        return {"index": sample_id, "tokens": self.tokens_of(sample, sample_id)}

    def tokens_of(self, sample: dict[str, Any], sample_id: int) -> np.ndarray:
        if "tokens" in sample:
            tokens = np.asarray(sample["tokens"], dtype=np.int64)
        elif "text" in sample:
            tokens = np.asarray(self.tokenizer(sample["text"], add_special_tokens=False, verbose=False)["input_ids"], dtype=np.int64)
        else:
            raise KeyError(f"sample {sample_id} (id {sample.get('id')!r}): no `text` or `tokens` column; it has {sorted(sample)}")
        return np.append(tokens, self.eos_token_id)


def pack(documents: Iterable[dict[str, Any]], max_seq_len: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Concatenate documents' tokens and cut them into `max_seq_len` sequences.

    Yields (tokens, sample index of each token). Every token lands in exactly
    one sequence, in order; only the tail shorter than one sequence is dropped.
    """
    tokens: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    buffered = 0
    for document in documents:
        tokens.append(document["tokens"])
        owners.append(np.full(len(document["tokens"]), document["index"], dtype=np.int64))
        buffered += len(document["tokens"])
        if buffered < max_seq_len:
            continue
        flat, flat_owners = np.concatenate(tokens), np.concatenate(owners)
        full = buffered // max_seq_len * max_seq_len
        for start in range(0, full, max_seq_len):
            yield flat[start:start + max_seq_len], flat_owners[start:start + max_seq_len]
        tokens, owners, buffered = [flat[full:]], [flat_owners[full:]], buffered - full


def shuffle_buffered(items: Iterable[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """`items` in a seeded random order drawn from a window of `size`: consecutive pieces of one long document spread out."""
    pool: list[Any] = []
    for item in items:
        if len(pool) < size:
            pool.append(item)
            continue
        pick = int(rng.integers(size))
        yield pool[pick]
        pool[pick] = item
    rng.shuffle(pool)
    yield from pool


class PackedSequences(IterableDataset):
    """Fixed-length training sequences from a `DocumentStream`, resumable mid-epoch.

    Each batch holds `input_ids`, `labels` (the same tokens: the loss covers every
    token of [d; t], the paper's Eq. 1) and `sample_index` (the stream sample
    each token came from, which shows what a batch trained on).
    """

    def __init__(self, documents: DocumentStream, max_seq_len: int, device_batch_size: int, shuffle_buffer: int = 0, seed: int = 0):
        self.documents = documents
        self.max_seq_len = max_seq_len
        self.device_batch_size = device_batch_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.resume: tuple[int, int] | None = None  # (epoch, global sequences consumed) from a checkpoint

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        world, epoch = World.detect(), self._epoch()
        skip = self._sequences_to_skip(world, epoch)
        sequences = pack(self.documents, self.max_seq_len)
        if self.shuffle_buffer:
            rng = np.random.default_rng([self.seed, epoch, world.rank, world.worker_of_rank])
            sequences = shuffle_buffered(sequences, self.shuffle_buffer, rng)
        for n, (tokens, owners) in enumerate(sequences):
            if n < skip:
                continue
            input_ids = torch.from_numpy(tokens)
            yield {"input_ids": input_ids, "labels": input_ids, "sample_index": torch.from_numpy(owners)}

    def _epoch(self) -> int:
        """The epoch the next iteration covers: the checkpoint's when resuming into it, else streaming's next."""
        epoch = self.documents.next_epoch
        return max(epoch, self.resume[0]) if self.resume else epoch

    def _sequences_to_skip(self, world: World, epoch: int) -> int:
        """How many sequences this loader worker already gave the checkpointed run in the epoch it resumes."""
        if self.resume is None or self.resume[0] != epoch:
            return 0  # a fresh run, or an epoch after the resumed one
        batches = self.resume[1] // world.num_ranks // self.device_batch_size  # this rank's, taken round-robin from its workers
        workers = world.workers_per_rank
        if batches % workers and world.worker_of_rank == 0:
            log.warning("resuming after %d batches with %d loader workers: the next %d batches come in rotated order "
                        "(save every multiple of num_workers batches for the exact order)", batches, workers, workers)
        mine = (batches - world.worker_of_rank + workers - 1) // workers
        return mine * self.device_batch_size

    def state_dict(self, num_samples: int, from_beginning: bool) -> dict[str, Any]:
        """Composer's resumption hook: `num_samples` is the sequences consumed in this epoch, all ranks together."""
        return {"documents": self.documents.state_dict(0, True), "sequences": num_samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.documents.load_state_dict(state["documents"])  # streaming restarts the epoch, in its order
        self.resume = (state["documents"]["epoch"], state["sequences"])


def build_dataloader(loader: LoaderConfig, tokenizer: Any, max_seq_len: int, device_batch_size: int, seed: int) -> DataSpec:
    """The train dataloader of a config, as a Composer DataSpec that counts tokens for the speed monitor."""
    dataset = loader.dataset
    documents = build_documents(dataset, tokenizer, device_batch_size, seed)
    workers = loader.num_workers
    dataloader = DataLoader(
        PackedSequences(documents, max_seq_len, device_batch_size, dataset.shuffle_buffer, documents.shuffle_seed),
        batch_size=device_batch_size,
        num_workers=workers,
        drop_last=loader.drop_last,
        pin_memory=loader.pin_memory and torch.cuda.is_available(),
        prefetch_factor=loader.prefetch_factor if workers else None,
        persistent_workers=loader.persistent_workers and workers > 0,
        timeout=loader.timeout,
    )
    return DataSpec(dataloader, get_num_tokens_in_batch=lambda batch: batch["input_ids"].numel())


def build_documents(dataset: DatasetConfig, tokenizer: Any, device_batch_size: int, seed: int) -> DocumentStream:
    streaming_args = dataset.model_dump(exclude={"streams", "download_timeout", "shuffle_seed", "shuffle_buffer"})
    return DocumentStream(
        tokenizer=tokenizer,
        streams=build_streams(dataset.streams, dataset.download_timeout),
        batch_size=device_batch_size,
        shuffle_seed=seed if dataset.shuffle_seed is None else dataset.shuffle_seed,
        **streaming_args,
    )
