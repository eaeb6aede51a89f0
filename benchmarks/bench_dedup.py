"""Deduplication: signature speed against datatrove's own, and what it finds on a corpus with planted duplicates.

    python -m benchmarks.bench_dedup [--documents 400] [--originals 300] [--rounds 3] [--bucket 5000]

Signatures: documents/s per core of tpt's `Deduplication.sign` (digest,
MinHash signature, LSH band keys) on ~2k-token documents of the demo's real
text, against datatrove's `MinhashDedupSignature` (`get_shingles` +
`get_signature`, its default 5-grams, 14 x 8 hashes) on the same documents in
the same process, timed by CPU time, fastest of a few alternating rounds.
datatrove's English word tokenizer needs spaCy, which tpt does not install,
so datatrove is given a whitespace word tokenizer, the words tpt's shingles use.

One large bucket: `--bucket` near copies of one text in one band's bucket, as
a corpus with a cluster of millions of near copies fills one: the edges tpt's
`near_edges` gives and the seconds they take with their union-find, against
the bare way, every verified pair, timed once (their ratio is not a matter of
noise).

Quality: real demo texts with planted duplicates (tests/corpora.py
`plant_duplicates`: exact copies in a heavier source, near copies with 0.2-4%
of their words replaced and a banner or date line added or removed, and
negative controls that share a long header and footer) through `tpt run`
(Beam, 2 workers) with thinking from a simulated OpenAI-compatible server
that counts the requests it answers, with deduplication on and then off.
Recall counts the planted near copies whose true Jaccard similarity (over the
same shingles) is at least 0.85.
"""

from __future__ import annotations

import os

os.environ["RAYON_NUM_THREADS"] = "1"

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.bench_cpu_stages import fastest
from tests.corpora import PLANTED_WEIGHTS, jaccard, plant_duplicates, write_corpus
from tests.simulator import SimulatedServer
from tpt.config import DedupConfig, GenerateConfig, MinHashConfig, PipelineConfig, SourceConfig
from tpt.dedup import Deduplication, Edge, Member, decide
from tpt.dedup.clusters import PAIRWISE, near_edges
from tpt.io.output import OutputLayout, read_rejects
from tpt.run import execute
from tpt.schema import Record

TRUE_NEAR = 0.85  # planted near copies at least this similar must be found


def datatrove_signer():
    """datatrove's signature step with a whitespace word tokenizer (its English one needs spaCy)."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Whitespace(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    step = MinhashDedupSignature(tempfile.mkdtemp(), MinhashConfig(), language=Whitespace())
    return lambda text: step.get_signature(step.get_shingles(text))


def signature_rates(documents: int, rounds: int) -> dict[str, float]:
    """Documents/s per core of each signer, on the same ~2k-token documents."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus.jsonl", documents)
        texts = [json.loads(line)["text"] for line in corpus.open(encoding="utf-8")]
    records = [Record(f"doc-{i}", "bench", text) for i, text in enumerate(texts)]
    dedup = Deduplication(DedupConfig(), {"bench": 1.0}, thinks=False)
    dedup.sign(records[0])  # datasketch imported outside the clock
    theirs = datatrove_signer()

    def ours(_inputs: None, _out: Path) -> int:
        return sum(len(dedup.sign(record).buckets) > 0 for record in records)

    def datatrove(_inputs: None, _out: Path) -> int:
        return sum(len(theirs(text)) > 0 for text in texts)

    with tempfile.TemporaryDirectory() as tmp:
        seconds = fastest({"tpt": (ours, None, documents), "datatrove": (datatrove, None, documents)}, rounds, Path(tmp),
                          clock=time.process_time)
    return {name: documents / took for name, took in seconds.items()}


def large_bucket(copies: int) -> dict[str, tuple[int, float, int]]:
    """One band's bucket of `copies` near copies of one text (up to a tenth of their values changed), as a corpus
    with a cluster of millions has: tpt's `near_edges` and union-find against the bare way, every verified pair
    (each copy against those before it, up to PAIRWISE) joined by the same union-find. (edges, seconds, duplicates)"""
    rng = np.random.default_rng(0)
    text = rng.integers(0, 2**32, size=MinHashConfig().permutations, dtype=np.uint32)
    entries = []
    for k in range(copies):
        signature = text.copy()
        changed = rng.choice(text.size, size=rng.integers(0, text.size // 10), replace=False)
        signature[changed] = rng.integers(0, 2**32, size=changed.size, dtype=np.uint32)
        entries.append((Member(f"copy-{k:07d}", "web", 1.0, str(k)), signature.tobytes()))
    threshold, sides = MinHashConfig().jaccard_threshold, {}
    for name, edges_of in (("tpt", lambda: near_edges(entries, threshold, one_per_digest=True)),
                           ("bare, every verified pair", lambda: every_verified_pair(entries, threshold))):
        started = time.perf_counter()
        edges = edges_of()
        duplicates = sum(1 for _ in decide(edges))
        sides[name] = (len(edges), time.perf_counter() - started, duplicates)
    return sides


def every_verified_pair(entries: list[tuple[Member, bytes]], threshold: float) -> list[Edge]:
    """The bare way: an edge for each copy and each one before it (up to PAIRWISE) that it is like."""
    signatures = np.stack([np.frombuffer(signature, np.uint32) for _, signature in entries])
    edges = []
    for i in range(1, len(entries)):
        similarities = (signatures[:min(i, PAIRWISE)] == signatures[i]).mean(axis=1)
        edges += [Edge(entries[j][0], entries[i][0], float(similarities[j])) for j in np.flatnonzero(similarities >= threshold)]
    return edges


def quality(originals: int, folder: Path) -> dict:
    planted = plant_duplicates(originals)
    paths = planted.write(folder)
    texts = {row["id"]: row["text"] for rows in planted.sources.values() for row in rows}
    sources = [SourceConfig(name=name, path=str(path), weight=PLANTED_WEIGHTS[name]) for name, path in paths.items()]
    results = {}
    with SimulatedServer(slots=64, rate=100_000, mean_tokens=20, instant=True) as server:
        for name, dedup in (("on", DedupConfig()), ("off", DedupConfig(exact=False, near=False))):
            generate = GenerateConfig(backend="openai", model="teacher", openai={"base_urls": [server.url]}, max_new_tokens=32)
            config = PipelineConfig(sources=sources, dedup=dedup, generate=generate, output={"dir": str(folder / name)})
            server.reset()
            started = time.perf_counter()
            summary = execute(config, "beam", workers=2)
            results[name] = {"requests": server.stats()["requests"], "seconds": time.perf_counter() - started,
                             "read": summary["totals"]["read"], "written": summary["totals"]["written"]}
    kept_as = {row["id"]: row["duplicate_of"] for row in read_rejects(OutputLayout(folder / "on")) if row.get("duplicate_of")}

    def together(a: str, b: str) -> bool:
        return kept_as.get(a, a) == kept_as.get(b, b)

    near = [(a, b, jaccard(texts[a], texts[b])) for a, b in planted.near]
    similar = [(a, b) for a, b, score in near if score >= TRUE_NEAR]
    merged_controls = [key for key in planted.controls if key in kept_as or key in kept_as.values()]
    return {
        "exact found": sum(together(a, b) for a, b in planted.exact) / len(planted.exact),
        "near found (true J >= 0.85)": sum(together(a, b) for a, b in similar) / max(len(similar), 1),
        "near planted (true J >= 0.85, all)": f"{len(similar)}, {len(near)}",
        f"near found (all planted, J from {min(score for *_, score in near):.2f})":
            sum(together(a, b) for a, b, _ in near) / len(near),
        "negative controls merged": len(merged_controls) / len(planted.controls),
        "clusters (documents kept)": results["on"]["written"],
        **{f"teacher requests, dedup {name}": run["requests"] for name, run in results.items()},
        "documents read": results["on"]["read"],
        **{f"run seconds, dedup {name}": f"{run['seconds']:.1f}" for name, run in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=400, help="~2k-token documents signed")
    parser.add_argument("--originals", type=int, default=300, help="original documents of the planted corpus")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bucket", type=int, default=5000, help="near copies of one text in one bucket")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.basicConfig(level=logging.ERROR)  # the engines' own notices: keep the output to the figures
    rates = signature_rates(args.documents, args.rounds)
    print(f"signatures, {args.documents} documents of ~2k tokens, docs/s per core (CPU time, fastest of {args.rounds}):")
    print(f"  tpt (digest + MinHash + bands)      {rates['tpt']:8.1f}")
    print(f"  datatrove MinhashDedupSignature     {rates['datatrove']:8.1f}")
    print(f"  ratio tpt / datatrove               {rates['tpt'] / rates['datatrove']:8.2f}  (target >= 1.0)")
    bucket = large_bucket(args.bucket)
    print(f"one bucket of {args.bucket:,} near copies of a text: edges, seconds to find them and join them by union-find:")
    for name, (edges, seconds, duplicates) in bucket.items():
        print(f"  {name:<34}{edges:12,} edges{seconds:8.2f} s  ({duplicates:,} duplicates)")
    (ours, ours_s, _), (bare, bare_s, _) = bucket.values()
    print(f"  ratio tpt / bare                  {ours / bare:12.4f}      {ours_s / bare_s:8.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        found = quality(args.originals, Path(tmp))
    print(f"quality, planted corpus from {args.originals} real documents (targets: near found >= 0.95, "
          "negative controls merged <= 0.005, teacher requests = clusters):")
    for name, value in found.items():
        print(f"  {name:<44}{value:.3f}" if isinstance(value, float) else f"  {name:<44}{value}")


if __name__ == "__main__":
    main()
