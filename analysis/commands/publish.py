"""Publish a run as a Hugging Face Hub dataset: Parquet files, one config per source, and a dataset card.

  tpt publish out/demo hub/demo                       # then: huggingface-cli upload ORG/NAME hub/demo . --repo-type dataset
  tpt publish gs://bucket/run gs://bucket/datasets/run --config configs/run.yaml

Each row holds `text` ([d; t]), `document`, `thinking`, the labels and every scalar field. The card (README.md)
carries the Hub's metadata (configs, license per source from the config's `license`, "unknown" where none is
named), the teacher and sampling settings, tokens per source and class, Figure 4's table and the pipeline config.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="OUT", help="a finished run output folder or URL (gs://...)")
    parser.add_argument("dest", metavar="DEST", help="the dataset folder or URL: new, empty, or (a local folder) an earlier publish")
    parser.add_argument("--config", help="the run's pipeline config (default: the one its summary.json recorded)")
    parser.add_argument("--file-size", default="500MB", help="uncompressed bytes per Parquet file (default: 500MB)")
    parser.add_argument("--row-group-size", default="100MB", help="bytes per Parquet row group in memory (default: 100MB)")


def main(args: argparse.Namespace) -> int:
    from tpt.analysis.publish import publish
    from tpt.analysis.runs import load_run
    from tpt.config import load_config, parse_size

    config = load_config(args.config) if args.config else None
    written = publish(load_run(args.run), args.dest, config, parse_size(args.file_size), parse_size(args.row_group_size))
    samples = sum(w["samples"] for w in written.values())
    files = sum(len(w["files"]) for w in written.values())
    print(f"tpt publish: {samples:,} samples in {files} Parquet file{'s' if files != 1 else ''}, "
          f"{len(written)} config{'s' if len(written) != 1 else ''} -> {args.dest}")
    print(f"  push it: huggingface-cli upload ORG/NAME {args.dest} . --repo-type dataset")
    return 0
