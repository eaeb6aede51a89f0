"""Write held-out raw documents as MDS shards, the eval set of `eval_loader`: `tpt heldout OUT INPUT.jsonl ...`.

The documents go in as they are (no truncation, no thinking), e.g. GSM8K's test split as text:
  tpt heldout out/heldout/gsm8k-test data/gsm8k/test.jsonl --text-fields question answer
then in the training YAML:  eval_loader: {label: heldout, dataset: {streams: {heldout: {local: out/heldout/gsm8k-test}}}}
"""

from __future__ import annotations

import argparse
from collections import Counter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="folder for the MDS dataset (replaced whole once written)")
    parser.add_argument("inputs", nargs="+", help="JSONL files of documents")
    parser.add_argument("--text-fields", nargs="+", default=["text"], help="field(s) holding the text, joined by a newline (default: text)")
    parser.add_argument("--id-field", default="id", help="field holding the document id (default: id; absent: file:line)")
    parser.add_argument("--limit", type=int, help="write the first N documents only")


def main(args: argparse.Namespace) -> int:
    from tpt.train.heldout import read_documents, write_heldout

    counts: Counter = Counter()
    counts.update(write_heldout(read_documents(args.inputs, args.text_fields, args.id_field, counts), args.output, args.limit))
    set_aside = ", ".join(f"{reason} {n}" for reason, n in counts.items() if reason != "written")
    print(f"tpt heldout: {counts['written']:,} documents in {args.output}" + (f"; set aside: {set_aside}" if set_aside else ""))
    return 0
