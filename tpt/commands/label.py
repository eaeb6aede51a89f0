"""Label a reproducible sample of a config's documents with domain / audience / reasoning intensity.

The LLM labeller asks the config's `generate:` backend for a JSON answer per
document, keeping `generate.max_in_flight` requests in flight (validated
against the taxonomy; an invalid answer is retried once, then recorded as
failed). The bootstrap labeller applies tpt's transparent
rules instead (a first look without a teacher). Each label is stored the moment it comes:
rerun the same command and finished documents are skipped. Writes OUTPUT/labels.parquet for
`tpt classifiers train`.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config YAML (its sources, and its generate: section for the LLM labeller)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="set a key of the config (dotted for nested keys)")
    parser.add_argument("--sample", type=int, required=True, metavar="N", help="documents to label")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder or URL (gs://...) for labels.jsonl (the resumable store) and labels.parquet")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (default: 0)")
    parser.add_argument("--labeller", choices=["llm", "bootstrap"], default="llm", help="who labels (default: llm)")


def main(args: argparse.Namespace) -> int:
    from tpt.classify.labelling import LABELS_FILE, BootstrapLabeller, label_sample
    from tpt.classify.sample import sample_documents
    from tpt.classify.taxonomy import load_taxonomy
    from tpt.config import ClassifyConfig, load_config

    config = load_config(args.config, args.overrides)
    classify = config.classify or ClassifyConfig()
    taxonomy = load_taxonomy(classify.taxonomy)
    if args.labeller == "llm" and config.generate is None:
        raise ValueError(f"{args.config}: the llm labeller needs a generate: section (the backend that answers)")
    records = sample_documents(config, args.sample, args.seed)
    if args.labeller == "bootstrap":
        counts = label_sample(records, BootstrapLabeller(taxonomy), args.output)
    else:
        from tpt.classify.llm import LLMLabeller
        from tpt.generate.backends import build_backend

        generate = config.generate.model_copy(update={"max_new_tokens": classify.label_max_new_tokens})
        backend = build_backend(generate)
        backend.setup()
        try:
            labeller = LLMLabeller(backend, taxonomy, generate, classify.label_max_chars)
            counts = label_sample(records, labeller, args.output)
        finally:
            backend.close()
    print(json.dumps(counts, indent=2))
    print(f"labels: {args.output}/{LABELS_FILE}")
    return 0
