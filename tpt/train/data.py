"""The training data path: MDS streams -> tokenized samples [d; t] + EOS -> packed `max_seq_len` sequences.

`DocumentStream` is a `StreamingDataset` over the weighted streams whose items
are already tokenized; `PackedSequences` concatenates them and cuts the result
into fixed-length sequences (llm-foundry's ConcatTokensDataset, online). The
order is a function of the seed alone, and a run resumes mid-epoch without
replaying it: every batch carries the `Position` its loader worker continues
from, the checkpoint keeps each worker's, and on resume streaming drops the
samples every worker is past (its own mid-epoch resumption) while each worker
re-reads at most one shuffle block to rebuild its packing state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from composer.core import DataSpec
from composer.utils import dist
from streaming import Stream, StreamingDataset
from streaming.base.world import World
from torch.utils.data import DataLoader, IterableDataset

from tpt.train.config import DatasetConfig, LoaderConfig
from tpt.train.streams import read_streams

log = logging.getLogger(__name__)

STREAM_KEYS = {"local", "remote", "split", "proportion", "repeat", "choose"}


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
        if not remote:
            index = Path(local) / "index.json"
            if not index.is_file():
                raise FileNotFoundError(f"stream {name!r}: no MDS shards at {local} (expected {index}; run `tpt run` first)")
            if any(shard.get("compression") for shard in json.loads(index.read_text())["shards"]):
                stream = {**stream, "remote": local, "local": decompressed_cache(local, index)}
        streams.append(Stream(download_timeout=download_timeout, **stream))
    return streams


def decompressed_cache(local: str, index: Path) -> str:
    """Where streaming decompresses the compressed shards of a local stream: beside them, it would double the run
    folder and fail on read-only storage. Under the temporary folder ($TMPDIR), where streaming caches a remote
    stream, named by the shards' folder and index: every rank of a node shares it, and a rerun's shards get their own."""
    key = hashlib.blake2b(str(Path(local).resolve()).encode() + index.read_bytes(), digest_size=16).hexdigest()
    return os.path.join(tempfile.gettempdir(), "tpt-streams", key)


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
        self.stream_of_worker: int | None = None  # the loader worker whose partition to iterate; None: this one's
        self.unread = 0  # samples of the partition still to pass over without reading them

    def continue_stream(self, worker: int, unread: int) -> None:
        """Iterate loader worker `worker`'s partition of the epoch, passing over its first `unread` samples unread.

        Streaming ties a partition to the worker that iterates it; a run resumed after
        a batch count that is not a multiple of num_workers hands its first batch to
        worker 0, which must continue the stream of the worker whose turn it was.
        """
        self.stream_of_worker, self.unread = worker, unread

    def _get_work(self, epoch: int, sample_in_epoch: int) -> np.ndarray:
        # streaming's one place that picks this worker's partition (pinned mosaicml-streaming 0.13): point it at the stream
        if self.stream_of_worker is not None:
            world = self._parallel_worker_world
            self._parallel_worker_world = World(world.num_nodes, world.ranks_per_node, world.workers_per_rank,
                                                world.rank * world.workers_per_rank + self.stream_of_worker)
        return super()._get_work(epoch, sample_in_epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (item for item in super().__iter__() if item is not None)

    def get_item(self, sample_id: int, retry: int = 7) -> dict[str, Any] | None:
        if self.unread:
            self.unread -= 1
            return None
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


class Position(NamedTuple):
    """Where a loader worker's sequences continue in an epoch: shuffle block `block` starts at token `offset` of the
    worker's document number `document` (counted in its partition), and its first `emitted` sequences were yielded."""

    block: int
    document: int
    offset: int
    emitted: int


START = Position(0, 0, 0, 0)


def pack(documents: Iterable[dict[str, Any]], max_seq_len: int, start: tuple[int, int] = (0, 0)
         ) -> Iterator[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
    """Concatenate documents' tokens and cut them into `max_seq_len` sequences.

    `documents` begin at document number start[0], whose first start[1] tokens are
    dropped (an earlier sequence holds them). Yields (tokens, sample index of each
    token, end): end is the (document, offset) packing would start again from.
    Every token lands in exactly one sequence, in order; only the tail shorter than
    one sequence is dropped.
    """
    tokens: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    buffered = 0
    for number, document in enumerate(documents, start[0]):
        dropped = start[1] if number == start[0] else 0
        taken = document["tokens"][dropped:]
        before, buffered = buffered, buffered + len(taken)
        tokens.append(taken)
        owners.append(np.full(len(taken), document["index"], dtype=np.int64))
        if buffered < max_seq_len:
            continue
        flat, flat_owners = np.concatenate(tokens), np.concatenate(owners)
        full = buffered // max_seq_len * max_seq_len
        for cut in range(0, full, max_seq_len):
            offset = dropped + cut + max_seq_len - before  # this document's tokens up to the sequence's end
            end = (number, offset) if offset < len(document["tokens"]) else (number + 1, 0)
            yield flat[cut:cut + max_seq_len], flat_owners[cut:cut + max_seq_len], end
        tokens, owners, buffered = [flat[full:]], [flat_owners[full:]], buffered - full


def shuffle_blocks(sequences: Iterable[tuple[np.ndarray, np.ndarray, tuple[int, int]]], size: int, start: Position,
                   order_of: Callable[[int, int], np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray, Position]]:
    """Packed sequences in blocks of `size`, each block in the order `order_of(block number, length)` gives, so the
    pieces of one long document spread over a block's batches. `sequences` begin at `start`'s block; its first
    `emitted` are not yielded again. Yields (tokens, owners, the position after this sequence)."""
    block, begin, emitted = start.block, (start.document, start.offset), start.emitted
    sequences = iter(sequences)
    while chunk := list(islice(sequences, size)):
        end = chunk[-1][2]
        for n, i in enumerate(order_of(block, len(chunk))[emitted:], emitted + 1):
            after = Position(block, *begin, n) if n < len(chunk) else Position(block + 1, *end, 0)
            yield chunk[i][0], chunk[i][1], after
        block, begin, emitted = block + 1, end, 0


class PackedSequences(IterableDataset):
    """Fixed-length training sequences from a `DocumentStream`, resumable anywhere in an epoch without replay.

    Each batch holds `input_ids`, `labels` (the same tokens: the loss covers every
    token of [d; t], the paper's Eq. 1), `sample_index` (the stream sample each token
    came from, which shows what a batch trained on) and `position` (its worker and
    where that worker continues; `consume` takes it off before training).
    """

    def __init__(self, documents: DocumentStream, max_seq_len: int, device_batch_size: int, shuffle_buffer: int = 0,
                 seed: int = 0, num_workers: int = 0):
        self.documents = documents
        self.max_seq_len = max_seq_len
        self.device_batch_size = device_batch_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.num_workers = max(1, num_workers)
        self.resume: dict[str, Any] | None = None  # the checkpoint's state, for the epoch it was taken in
        self.trained: dict[int, tuple[int, Position]] = {}  # trainer process: worker -> (epoch, position after its last batch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        world, epoch = World.detect(), self._epoch()
        worker, position, unread = world.worker_of_rank, START, 0
        if self.resume is not None and self.resume["documents"]["epoch"] == epoch:
            # PyTorch hands the first batch to worker 0 again: it continues the stream whose turn it was
            worker = (worker + self.resume["batches"]) % world.workers_per_rank
            position = Position(*self.resume["positions"][world.rank][worker])
            unread = position.document - self.resume["dropped"]  # the documents streaming did not drop
        self.documents.continue_stream(worker, unread)
        sequences = pack(self.documents, self.max_seq_len, (position.document, position.offset))

        def order_of(block: int, length: int) -> np.ndarray:
            if self.shuffle_buffer <= 1:
                return np.arange(length)
            return np.random.default_rng([self.seed, epoch, world.rank, worker, block]).permutation(length)

        for tokens, owners, after in shuffle_blocks(sequences, max(1, self.shuffle_buffer), position, order_of):
            input_ids = torch.from_numpy(tokens)
            yield {"input_ids": input_ids, "labels": input_ids, "sample_index": torch.from_numpy(owners),
                   "position": torch.tensor([epoch, worker, *after])}

    def _epoch(self) -> int:
        """The epoch the next iteration covers: the checkpoint's when resuming into it, else streaming's next."""
        epoch = self.documents.next_epoch
        return max(epoch, self.resume["documents"]["epoch"]) if self.resume else epoch

    def consume(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Note where the worker that made `batch` continues, as the trainer takes the batch (Composer's batch
        transform, run in the trainer process on every training batch)."""
        epoch, worker, *after = batch.pop("position")[-1].tolist()
        self.trained[worker] = (epoch, Position(*after))
        return batch

    def state_dict(self, num_samples: int, from_beginning: bool) -> dict[str, Any]:
        """Composer's resumption hook, called on every rank at a checkpoint; `num_samples` is the sequences trained on
        in this epoch, all ranks together (Composer counts from the epoch's start).

        The state holds every rank's worker positions (each rank loads rank 0's
        checkpoint) and, for streaming, the samples of the epoch every worker is past.
        """
        ranks, workers, batch_size = dist.get_world_size(), self.num_workers, self.device_batch_size
        documents = self.documents.state_dict(0, True)
        if not num_samples:  # the epoch streaming is in has ended (or none began): the next one starts afresh
            documents["epoch"] += 1
        epoch = documents["epoch"]
        mine = [list(self.trained[w][1]) if w in self.trained and self.trained[w][0] == epoch else list(START)
                for w in range(workers)]
        positions = dist.all_gather_object(mine)
        past = min(position[1] for rank in positions for position in rank) // batch_size  # batches of every worker's partition
        documents["sample_in_epoch"] = past * ranks * workers * batch_size
        return {"documents": documents, "batches": num_samples // (ranks * batch_size), "dropped": past * batch_size,
                "positions": positions, "device_batch_size": batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "positions" not in state:
            raise ValueError("the checkpoint's data state has no loader positions: it was written by an older tpt, "
                             "which replayed the epoch on resume; resume it with that version")
        shape = (len(state["positions"]), len(state["positions"][0]), state["device_batch_size"])
        if shape != (dist.get_world_size(), self.num_workers, self.device_batch_size):
            raise ValueError(f"the checkpoint was written by {shape[0]} devices x {shape[1]} loader workers x {shape[2]} "
                             f"sequences per device batch; this run has {dist.get_world_size()} x {self.num_workers} x "
                             f"{self.device_batch_size}: relaunch with the same, or the data order would change")
        self.documents.load_state_dict(state["documents"])
        self.resume = state
        epoch = state["documents"]["epoch"]
        self.trained = {w: (epoch, Position(*p)) for w, p in enumerate(state["positions"][dist.get_global_rank()])}


def build_dataloader(loader: LoaderConfig, tokenizer: Any, max_seq_len: int, device_batch_size: int, seed: int) -> DataSpec:
    """The train dataloader of a config, as a Composer DataSpec that counts tokens for the speed monitor."""
    dataset = loader.dataset
    documents = build_documents(dataset, tokenizer, device_batch_size, seed)
    workers = loader.num_workers
    sequences = PackedSequences(documents, max_seq_len, device_batch_size, dataset.shuffle_buffer, documents.shuffle_seed, workers)
    dataloader = DataLoader(
        sequences,
        batch_size=device_batch_size,
        num_workers=workers,
        drop_last=loader.drop_last,
        pin_memory=loader.pin_memory and torch.cuda.is_available(),
        prefetch_factor=loader.prefetch_factor if workers else None,
        persistent_workers=loader.persistent_workers and workers > 0,
        timeout=loader.timeout,
    )
    return DataSpec(dataloader, batch_transforms=sequences.consume, get_num_tokens_in_batch=lambda batch: batch["input_ids"].numel())


def build_documents(dataset: DatasetConfig, tokenizer: Any, device_batch_size: int, seed: int) -> DocumentStream:
    streaming_args = dataset.model_dump(exclude={"streams", "download_timeout", "shuffle_seed", "shuffle_buffer"})
    return DocumentStream(
        tokenizer=tokenizer,
        streams=build_streams(dataset.streams, dataset.download_timeout),
        batch_size=device_batch_size,
        shuffle_seed=seed if dataset.shuffle_seed is None else dataset.shuffle_seed,
        **streaming_args,
    )
