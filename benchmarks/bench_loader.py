"""Throughput of tpt's training data path (stream -> tokenize -> pack) in one CPU process, against
reading the same shards with a bare StreamingDataset, and against what a GPU consumes.

    python -m benchmarks.bench_loader                       # runs the demo pipeline first
    python -m benchmarks.bench_loader --streams out/demo/streams.yaml --seconds 20

Both loops run in this process with no loader workers, so the numbers are per
CPU core; a training run has `train_loader.num_workers` of them per GPU.

Then resumption: the seconds from building a loader to the batch after the first
N of an epoch, for N early and late in it, resumed from the loader's checkpoint
state against replaying the N batches (what a resume without loader positions
waits), measured in the same run; the resumed batch is checked to be the one the
replay drew next.

    python -m benchmarks.bench_loader --resume-at 40 800 --shuffle-buffer 256
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from streaming import StreamingDataset

from tpt.train.config import DatasetConfig, LoaderConfig, TokenizerConfig
from tpt.train.data import PackedSequences, build_dataloader, build_documents, build_streams
from tpt.train.model import build_tokenizer

ROOT = Path(__file__).resolve().parents[1]

# The GPU side: a 1B Llama-style model (24 layers, d_model 2048) at 40% MFU on one H100 SXM (989.5 dense bf16 TFLOP/s).
H100_BF16_FLOPS = 989.5e12
MFU = 0.40
PARAMS, LAYERS, D_MODEL = 1.0e9, 24, 2048


def flops_per_token(seq_len: int) -> float:
    """Training FLOPs per token: 6·N (forward + backward matmuls) + 12·layers·d_model·seq_len (attention)."""
    return 6 * PARAMS + 12 * LAYERS * D_MODEL * seq_len


def demo_streams(folder: Path) -> Path:
    from tpt.config import load_config
    from tpt.run import execute

    config = load_config(ROOT / "configs" / "demo.yaml").with_output_dir(str(folder))
    execute(config, workers=2)
    return folder / "streams.yaml"


def timed(items, seconds: float) -> tuple[list, float]:
    """Items drawn for about `seconds` (whole epochs repeated as needed), and the time it took."""
    drawn, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        before = len(drawn)
        for item in items:
            drawn.append(item)
            if time.perf_counter() - start >= seconds:
                break
        if len(drawn) == before:
            raise ValueError("the streams gave no items")
    return drawn, time.perf_counter() - start


def resume_seconds(streams: str, tokenizer, batches: int, args: argparse.Namespace) -> tuple[float, float]:
    """Seconds from building the loader to its batch number `batches` + 1: drawing the batches before it (a replay),
    and loading the state a checkpoint after them holds. Raises if the two give different batches."""
    loader = LoaderConfig(dataset=DatasetConfig(streams=streams, epoch_size=args.epoch_size, shuffle_buffer=args.shuffle_buffer),
                          num_workers=0)
    start = time.perf_counter()
    spec = build_dataloader(loader, tokenizer, args.max_seq_len, args.batch_size, seed=17)
    drawn = map(spec.batch_transforms, spec.dataloader)
    for _ in range(batches):
        next(drawn)
    state = spec.dataloader.dataset.state_dict(batches * args.batch_size, True)
    expected = next(drawn)
    replay = time.perf_counter() - start
    del spec, drawn
    gc.collect()  # streaming allows one live dataset per local folder

    start = time.perf_counter()
    spec = build_dataloader(loader, tokenizer, args.max_seq_len, args.batch_size, seed=17)
    spec.dataloader.dataset.load_state_dict(state)
    first = spec.batch_transforms(next(iter(spec.dataloader)))
    resume = time.perf_counter() - start
    if not torch.equal(first["input_ids"], expected["input_ids"]):
        raise AssertionError(f"the loader resumed after {batches} batches gave another batch than the one that came next")
    del spec
    gc.collect()
    return replay, resume


def report_resume(streams: str, tokenizer, args: argparse.Namespace) -> None:
    print(f"\nresume in an epoch of {args.epoch_size:,} samples: batches of {args.batch_size} x {args.max_seq_len} tokens, "
          f"shuffle_buffer {args.shuffle_buffer}; seconds from building the loader to the next batch, one CPU process")
    print(f"{'after batch':>12} {'replay (s)':>11} {'resume (s)':>11} {'replay / resume':>16}")
    for batches in args.resume_at:
        replay, resume = resume_seconds(streams, tokenizer, batches, args)
        print(f"{batches:>12,} {replay:>11.2f} {resume:>11.2f} {replay / resume:>16.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", help="a streams.yaml written by `tpt run` (default: run configs/demo.yaml into a temp folder)")
    parser.add_argument("--max-seq-len", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured loop")
    parser.add_argument("--tokenizer", default="embedded")
    parser.add_argument("--resume-at", type=int, nargs="+", default=[40, 800], help="batches into the epoch to resume after")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per device batch, for the resume figures")
    parser.add_argument("--shuffle-buffer", type=int, default=256, help="the GPU YAMLs' shuffle block, for the resume figures")
    parser.add_argument("--epoch-size", type=int, default=200_000, help="samples per epoch (the demo's, repeated), for the resume figures")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        streams = args.streams or demo_streams(Path(tmp) / "demo")
        tokenizer = build_tokenizer(TokenizerConfig(name=args.tokenizer))

        bare = StreamingDataset(streams=build_streams(str(streams), 60), batch_size=1, shuffle=True, shuffle_seed=17)
        samples, bare_seconds = timed(bare, args.seconds)
        bare_docs_s = len(samples) / bare_seconds
        del bare, samples
        gc.collect()  # streaming allows one live dataset per local folder

        documents = build_documents(DatasetConfig(streams=str(streams)), tokenizer, device_batch_size=1, seed=17)
        sequences, tpt_seconds = timed(PackedSequences(documents, args.max_seq_len, 1), args.seconds)
        del documents
        gc.collect()
        report_throughput(streams, sequences, tpt_seconds, bare_docs_s, args)
        report_resume(str(streams), tokenizer, args)


def report_throughput(streams, sequences: list, tpt_seconds: float, bare_docs_s: float, args: argparse.Namespace) -> None:
    owners = np.concatenate([s["sample_index"].numpy() for s in sequences])
    docs = 1 + int(np.count_nonzero(np.diff(owners)))  # documents the sequences hold (first and last in part)
    tokens_per_doc = len(owners) / docs
    tpt_seq_s, tpt_docs_s = len(sequences) / tpt_seconds, docs / tpt_seconds
    needed_tokens_s = MFU * H100_BF16_FLOPS / flops_per_token(args.max_seq_len)
    needed_seq_s = needed_tokens_s / args.max_seq_len
    print(f"shards: {streams}; {tokens_per_doc:,.0f} tokens per sample (text + EOS); "
          f"sequences of {args.max_seq_len} tokens; one CPU process")
    print(f"bare StreamingDataset (read only):  {bare_docs_s:9,.0f} samples/s = "
          f"{bare_docs_s * tokens_per_doc / args.max_seq_len:8,.1f} sequences/s")
    print(f"tpt stream -> tokenize -> pack:     {tpt_docs_s:9,.0f} samples/s = {tpt_seq_s:8,.1f} sequences/s "
          f"({tpt_seq_s * args.max_seq_len:,.0f} tokens/s)")
    print(f"ratio tpt / bare: {tpt_seq_s / (bare_docs_s * tokens_per_doc / args.max_seq_len):.3f} (what tokenizing and packing cost)")
    print(f"1B model at {MFU:.0%} MFU on one H100 consumes {needed_seq_s:,.1f} sequences/s ({needed_tokens_s:,.0f} tokens/s), with "
          f"FLOPs/token = 6*N + 12*layers*d_model*seq = 6*{PARAMS:.0e} + 12*{LAYERS}*{D_MODEL}*{args.max_seq_len} "
          f"= {flops_per_token(args.max_seq_len):.3e}")
    print(f"margin: one loader process makes {tpt_seq_s / needed_seq_s:.1f}x the sequences the GPU consumes")


if __name__ == "__main__":
    main()
