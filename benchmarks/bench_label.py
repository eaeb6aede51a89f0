"""`tpt label` at scale: its throughput through the window against a plain asyncio client, and the tokens that
price labelling 100k documents.

    python -m benchmarks.bench_label [--docs 770] [--slots 64] [--rate 250] [--window 256]

Part 1, throughput. No GPU runs here, so the server is simulated
(tests/simulator.py): `--slots` decode slots of `--rate` tokens/s each,
answers of lognormal length (mean 24 tokens, a JSON labelling's size, capped at
`classify.label_max_new_tokens`). The simulator answers with text cut from the
demo corpus, not JSON, so every first answer is invalid and retried once: each
document costs two requests, the second sent when the first is back, which is
the worst case of the in-window retry. tpt: `label_sample` with the LLM
labeller over the openai backend (prompts, parsing, the retry, the store,
progress), `generate.max_in_flight = --window`. The baseline, on a fresh server
of the same settings in the same run: one asyncio loop keeping `--window`
requests in flight over the same number of requests with the same bodies (each
document's request and a retry of the same shape), all known in advance.
Prints requests/s, output tokens/s and the server's mean busy slots for both,
and their ratio.

Part 2, cost. The rubric prompt of the default taxonomy for each demo document
(its first `classify.label_max_chars` characters), counted with the embedded
teacher's tokenizer through its chat template, and a valid answer (the JSON
object of the document's bootstrap labels), counted the same way: tokens per
document, and per 100k documents.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time

from benchmarks.bench_generate_fleet import documents, keep_window
from tests.simulator import SimulatedServer
from tpt.assets import resolve_model_path
from tpt.classify.bootstrap import BootstrapAnnotator
from tpt.classify.labelling import label_sample
from tpt.classify.llm import AnswerError, Attempt, LLMLabeller
from tpt.classify.taxonomy import AXES, load_taxonomy
from tpt.config import ClassifyConfig, GenerateConfig
from tpt.generate.backends import build_backend
from tpt.generate.backends.openai import request_body
from tpt.generate.types import Completion
from tpt.schema import Record

MODEL = "teacher"  # the served model name
ANSWER_TOKENS = 24  # mean simulated answer: a JSON object with three label ids
CLASSIFY = ClassifyConfig()  # the default taxonomy, answer budget and characters shown
DOCUMENT = "<the document>"  # marks where the document starts in a rendered prompt


def settings(url: str, window: int) -> GenerateConfig:
    return GenerateConfig(backend="openai", openai={"base_urls": [url]}, model=MODEL, max_new_tokens=CLASSIFY.label_max_new_tokens,
                          max_in_flight=window, stop=[])


def tpt_label(url: str, window: int, records: list[Record]) -> tuple[float, dict]:
    """(seconds, counts) of `label_sample` with the LLM labeller over the openai backend, set-up excluded."""
    generate = settings(url, window)
    backend = build_backend(generate)
    backend.setup()
    try:
        labeller = LLMLabeller(backend, load_taxonomy(CLASSIFY.taxonomy), generate, CLASSIFY.label_max_chars)
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            counts = label_sample(records, labeller, out)
            return time.perf_counter() - started, counts
    finally:
        backend.close()


def baseline_bodies(window: int, records: list[Record]) -> list[dict]:
    """The bodies tpt sends for `records`: each document's request, and its retry after an invalid answer."""
    generate = settings("http://unused/v1", window)
    labeller = LLMLabeller(None, load_taxonomy(CLASSIFY.taxonomy), generate, CLASSIFY.label_max_chars)
    invalid = [Attempt(r, Completion(r.id, "not a labelling", "stop"), AnswerError("no JSON object")) for r in records]
    requests = [labeller.request(r) for r in records] + [labeller.retry(attempt) for attempt in invalid]
    return [request_body(generate, request) for request in requests]


def throughput(args: argparse.Namespace, records: list[Record]) -> None:
    server_settings = {"slots": args.slots, "rate": args.rate, "mean_tokens": ANSWER_TOKENS, "sigma": 0.5, "model": MODEL}
    with SimulatedServer(**server_settings) as server:
        seconds, counts = tpt_label(server.url, args.window, records)
        ours = server.stats()
    with SimulatedServer(**server_settings) as server:
        bodies = baseline_bodies(args.window, records)
        started = time.perf_counter()
        asyncio.run(keep_window([server.url], bodies, args.window))
        bare_seconds = time.perf_counter() - started
        bare = server.stats()
    print(f"throughput, {len(records)} documents, a simulated server of {args.slots} slots x {args.rate:g} tokens/s, window {args.window}:")
    for name, stats, wall in (("bare asyncio client", bare, bare_seconds), ("tpt label", ours, seconds)):
        print(f"  {name:20} {stats['requests'] / wall:8,.1f} requests/s {stats['output_tokens'] / wall:9,.0f} output tokens/s "
              f"busy slots {stats['mean_busy_slots']:5.1f} of {args.slots} ({stats['requests']:,} requests in {wall:.1f} s)")
    print(f"  tpt label: {len(records) / seconds:,.1f} documents/s ({counts['failed']:,} failed after their retry, as the simulator's "
          f"answers are not JSON)")
    ratio = (ours["output_tokens"] / seconds) / (bare["output_tokens"] / bare_seconds)
    print(f"  ratio tpt/bare, output tokens/s: {ratio:.3f}")


def cost(records: list[Record]) -> None:
    from transformers import AutoTokenizer

    taxonomy = load_taxonomy(CLASSIFY.taxonomy)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("embedded"))
    labeller = LLMLabeller(None, taxonomy, GenerateConfig(model=MODEL), CLASSIFY.label_max_chars)
    annotator = BootstrapAnnotator(taxonomy)
    prompt = output = 0
    for record in records:
        prompt += len(tokenizer.apply_chat_template(list(labeller.request(record).messages), tokenize=True, add_generation_prompt=True))
        labels = annotator.annotate(record.text).labels
        output += len(tokenizer(json.dumps({axis: labels[axis] for axis in AXES}), add_special_tokens=False)["input_ids"])
    per_doc_prompt, per_doc_output = prompt / len(records), output / len(records)
    rendered = tokenizer.apply_chat_template(list(labeller.request(Record("-", "bench", DOCUMENT)).messages), tokenize=False)
    shared = len(tokenizer(rendered[:rendered.rindex(DOCUMENT)], add_special_tokens=False)["input_ids"])  # all before the document
    print(f"cost, {len(records)} demo documents, the default taxonomy, label_max_chars {CLASSIFY.label_max_chars}, "
          "the embedded teacher's tokenizer:")
    print(f"  per document: {per_doc_prompt:,.0f} prompt tokens, {per_doc_output:.1f} answer tokens; about {shared:,} of the prompt "
          "tokens come before the document and are the same for every one (a server's prefix cache computes them once)")
    print(f"  per 100k documents: {per_doc_prompt * 1e5 / 1e6:,.1f}M prompt tokens, {per_doc_output * 1e5 / 1e6:,.2f}M answer tokens "
          "(first answers; each retried document adds about as much again)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=770, help="documents (going round the 385 demo documents)")
    parser.add_argument("--slots", type=int, default=64, help="decode slots of the simulated server (vLLM's max_num_seqs)")
    parser.add_argument("--rate", type=float, default=250.0, help="output tokens/s per sequence")
    parser.add_argument("--window", type=int, default=256, help="requests in flight (generate.max_in_flight)")
    args = parser.parse_args()
    records = documents(args.docs)
    throughput(args, records)
    cost(records[:385])
    print("reproduce:", shlex.join(["python", *sys.argv]))


if __name__ == "__main__":
    main()
