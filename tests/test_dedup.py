"""Deduplication before generation: the same text and near copies, across sources, the teacher asked once per cluster."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import outcome, write_jsonl
from tests.corpora import PLANTED_WEIGHTS, jaccard, plant_duplicates, planted_config
from tests.test_pipeline_beam import run_cli
from tpt.config import DedupConfig, GenerateConfig, NormalizeConfig, PipelineConfig, SourceConfig, load_config
from tpt.config_file import ConfigError
from tpt.dedup import Deduplication, Member, decide
from tpt.dedup.clusters import Edge, near_edges
from tpt.dedup.signature import digest, shingles
from tpt.run import execute
from tpt.schema import Record


def clusters_of(duplicates) -> set[frozenset[str]]:
    """The clusters (kept id and its duplicates' ids) that `decide` found."""
    members = defaultdict(set)
    for duplicate in duplicates:
        members[duplicate.kept.id] |= {duplicate.kept.id, duplicate.member.id}
    return {frozenset(ids) for ids in members.values()}


def in_process(dedup: Deduplication, records: list[Record]) -> set[frozenset[str]]:
    """Deduplication's steps by hand, each bucket grouped in memory as an engine's shuffle would group it."""
    buckets = defaultdict(list)
    for record in records:
        for bucket, entry in dedup.sign(record).entries():
            buckets[bucket].append(entry)
    return clusters_of(decide(edge for bucket, entries in buckets.items() for edge in dedup.edges(bucket, entries)))


def test_normalisation_decides_what_counts_as_the_same_text():
    config = NormalizeConfig()
    assert digest("Caf\u00e9  au\tlait\n", config) == digest("Cafe\u0301 au lait", config)  # NFC, whitespace
    assert digest("Café au lait", config) != digest("café au lait", config)
    assert digest("Café au lait", NormalizeConfig(lowercase=True)) == digest("café au lait", NormalizeConfig(lowercase=True))
    assert digest("a  b", NormalizeConfig(whitespace=False)) != digest("a b", NormalizeConfig(whitespace=False))
    assert shingles("One two Three four", 2) == ["one two", "two three", "three four"]
    assert shingles("Too short", 5) == ["too short"]


def test_clusters_equal_datasketch_minhash_lsh_on_the_same_texts():
    """The clusters of tpt's buckets, pairs and union-find equal those of datasketch's own MinHashLSH (queried for
    every text, candidates verified at the same estimated Jaccard, joined by union-find), on the same texts,
    shingles and parameters."""
    import xxhash
    from datasketch import MinHash, MinHashLSH

    planted = plant_duplicates(60, seed=3)
    records = [Record(row["id"], name, row["text"]) for name, rows in planted.sources.items() for row in rows]
    texts = {record.id: record.text for record in records}
    config = DedupConfig()
    ours = in_process(Deduplication(config, PLANTED_WEIGHTS, thinks=False), records)

    minhash = config.minhash
    lsh = MinHashLSH(threshold=minhash.jaccard_threshold, num_perm=minhash.permutations,
                     params=(minhash.num_buckets, minhash.hashes_per_bucket))
    signatures = {}
    for record in records:
        signature = MinHash(num_perm=minhash.permutations, seed=minhash.seed, hashfunc=xxhash.xxh32_intdigest)
        signature.update_batch(shingles(record.text, minhash.n_grams))
        lsh.insert(record.id, signature)
        signatures[record.id] = signature
    parent = {key: key for key in signatures}

    def root(key: str) -> str:
        while parent[key] != key:
            key = parent[key]
        return key

    for key, signature in signatures.items():
        for other in lsh.query(signature):
            if other != key and signature.jaccard(signatures[other]) >= minhash.jaccard_threshold:
                parent[root(other)] = root(key)
    components = defaultdict(set)
    for key in signatures:
        components[root(key)].add(key)
    theirs = {frozenset(ids) for ids in components.values() if len(ids) > 1}

    assert ours == theirs
    similar = [pair for pair in planted.near if jaccard(*(texts[key] for key in pair)) >= 0.9]
    assert len(similar) >= 5 and all(any(set(pair) <= cluster for cluster in ours) for pair in [*planted.exact, *similar])
    assert max(map(len, ours)) >= 3  # a bucket holds more than a pair


def member(key: str, source: str, weight: float, text: str = "") -> Member:
    return Member(key, source, weight, digest(text or key, NormalizeConfig()))


def test_the_kept_copy_is_the_heaviest_sources_then_the_smallest_id_and_clusters_are_transitive():
    a, b, c = member("a", "web", 1.0), member("b", "books", 3.0), member("c", "web", 1.0)
    x, y = member("y", "web", 1.0, "same"), member("x", "web", 1.0, "same")
    edges = [Edge(a, c, 0.9), Edge(c, b, 0.85), Edge(x, y, 1.0)]
    for order in (edges, edges[::-1]):
        found = {duplicate.member.id: duplicate for duplicate in decide(order)}
        assert {key: (d.kept.id, d.kind) for key, d in found.items()} == {
            "a": ("b", "near_duplicate"), "c": ("b", "near_duplicate"), "y": ("x", "duplicate_text")}
        assert (found["c"].similarity, found["c"].neighbour) == (0.85, "b")  # compared with the kept copy itself
        assert (found["a"].similarity, found["a"].neighbour) == (0.9, "c")  # joined to it through c


def test_clusters_merged_from_several_places_decide_as_one_union_find_of_every_edge():
    """A Beam combiner's partial union-finds, merged in any order, decide what one union-find of every edge does."""
    from tpt.dedup import Clusters

    members = {key: member(key, "books" if key in "bk" else "web", 2.0 if key in "bk" else 1.0, "one" if key in "xy" else "")
               for key in "abcdekxyz"}
    edges = [Edge(members[a], members[b], score) for a, b, score in
             [("a", "c", 0.9), ("c", "b", 0.85), ("d", "e", 0.95), ("e", "k", 0.8), ("x", "y", 1.0), ("a", "z", 0.82),
              ("c", "b", 0.85), ("z", "d", 0.81)]]
    whole = list(decide(edges))
    for split in (2, 5, 7):
        for parts in ([edges[:split], edges[split:]], [edges[split:], edges[:split]]):
            partial = [Clusters() for _ in parts]
            for clusters, part in zip(partial, parts):
                for edge in part:
                    clusters.add(edge)
            merged, *others = partial
            for clusters in others:
                merged.merge(clusters)
            assert list(merged.duplicates()) == whole
    assert {d.member.id: d.kept.id for d in whole} == dict.fromkeys("acdekz", "b") | {"y": "x"}


def test_every_pair_of_a_bucket_is_verified_not_only_those_with_its_first_member():
    """a and c are each like b but not like each other; b is not first by rank, yet both its pairs are found."""
    import numpy as np

    hub = np.arange(112, dtype=np.uint32)
    left, right = hub.copy(), hub.copy()
    left[:20] += 1000  # 92 of 112 values agree with the hub: an estimated Jaccard of 0.82
    right[20:40] += 1000  # the same, but 72 of 112 with `left`: 0.64
    a, b, c = (member(key, "web", 1.0) for key in "abc")
    edges = near_edges([(c, right.tobytes()), (b, hub.tobytes()), (a, left.tobytes())], threshold=0.8, one_per_digest=True)
    assert {(edge.a.id, edge.b.id, round(edge.similarity, 2)) for edge in edges} == {("a", "b", 0.82), ("b", "c", 0.82)}


def test_a_bucket_gives_the_clusters_of_every_verified_pair_with_as_few_edges_as_they_need():
    """Near copies of 12 texts, each with up to 40% of its values changed: some pairs of copies are alike, some
    only through others. The bucket's edges make the clusters every pair above the threshold makes, with a
    fraction of the edges; 300 copies of one text give 299 edges, not 44,850."""
    import numpy as np

    rng = np.random.default_rng(7)
    texts = rng.integers(0, 2**32, size=(12, 112), dtype=np.uint32)
    entries = []
    for k in range(240):
        signature = texts[k % 12].copy()
        changed = rng.choice(112, size=rng.integers(0, 45), replace=False)
        signature[changed] = rng.integers(0, 2**32, size=changed.size, dtype=np.uint32)
        entries.append((member(f"d{k:03d}", "web", 1.0), signature.tobytes()))
    values = {entry[0].id: np.frombuffer(entry[1], np.uint32) for entry in entries}
    every_pair = [Edge(a, b, similarity) for (a, _), (b, _) in itertools.combinations(entries, 2)
                  if (similarity := np.count_nonzero(values[a.id] == values[b.id]) / 112) >= 0.8]
    edges = near_edges(entries, 0.8, one_per_digest=True)
    assert clusters_of(decide(edges)) == clusters_of(decide(every_pair))
    linked = {frozenset((edge.a.id, edge.b.id)) for edge in every_pair}
    assert any(frozenset(pair) not in linked for cluster in clusters_of(decide(edges)) for pair in itertools.combinations(cluster, 2))
    assert len(edges) < len(every_pair) / 3

    same = texts[0].tobytes()
    assert len(near_edges([(member(f"c{k:03d}", "web", 1.0), same) for k in range(300)], 0.8, one_per_digest=True)) == 299


def test_a_large_bucket_compares_each_member_with_the_first_by_rank(monkeypatch):
    """Past PAIRWISE members a bucket compares each with the first PAIRWISE by rank only: those must be the highest
    ranked, once same-text copies are left to exact deduplication. Here PAIRWISE is 1: a, first by rank, must meet
    d, which is like it and unlike b, though c, a copy of a's text, ranks between them."""
    import numpy as np

    from tpt.dedup import clusters

    monkeypatch.setattr(clusters, "PAIRWISE", 1)
    like, unlike = np.arange(112, dtype=np.uint32), np.arange(112, dtype=np.uint32) + 1000
    a, b, c, d = member("a", "web", 1.0, "one text"), member("b", "web", 1.0), member("c", "web", 1.0, "one text"), member("d", "web", 1.0)
    edges = near_edges([(d, like.tobytes()), (c, like.tobytes()), (b, unlike.tobytes()), (a, like.tobytes())],
                       threshold=0.8, one_per_digest=True)
    assert {(edge.a.id, edge.b.id) for edge in edges} == {("a", "d")}


@pytest.mark.parametrize("minhash, key", [
    ({"num_perm": 100}, "dedup.minhash.num_perm: must equal num_buckets x hashes_per_bucket = 14 x 8 = 112, got 100"),
    ({"num_buckets": 10, "hashes_per_bucket": 4, "num_perm": 112}, "dedup.minhash.num_perm: must equal"),
    ({"jaccard_threshold": 0}, "dedup.minhash.jaccard_threshold: Input should be greater than 0"),
    ({"jaccard_threshold": 1.5}, "dedup.minhash.jaccard_threshold: Input should be less than or equal to 1"),
])
def test_bad_parameters_are_refused_before_the_run_naming_the_key(tmp_path, minhash, key):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"sources": [{"name": "a", "path": str(write_jsonl(tmp_path / "a.jsonl", []))}],
                                  "dedup": {"minhash": minhash}}))
    with pytest.raises(ConfigError, match=key.replace("(", r"\(")):
        load_config(config)
    result = run_cli("run", str(config), "--output", str(tmp_path / "out"))
    assert result.returncode == 2 and key in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_same_copies_are_kept_on_every_engine_task_count_and_rerun(tmp_path, planted_run):
    config, summary, reference = planted_run  # Beam, 2 workers
    assert summary["totals"]["read"] == summary["totals"]["written"] + summary["totals"]["rejected"]
    outcomes = {}
    for name, options in {"datatrove-1": {"workers": 1, "tasks": 1}, "datatrove-3": {"workers": 2, "tasks": 3}}.items():
        summary = execute(config.with_output_dir(str(tmp_path / name)), "datatrove", **options)
        outcomes[name] = outcome(tmp_path / name)
        assert summary["totals"]["read"] == summary["totals"]["written"] + summary["totals"]["rejected"]
    execute(config, "beam", workers=1)  # a rerun in the finished run's folder, with another worker count
    outcomes["beam rerun"] = outcome(Path(config.output.dir))

    assert all(found == reference for found in outcomes.values())
    planted = plant_duplicates(24, max_words=400)
    # an exact copy in the heavier `mirror` source is kept over its original in `web`
    assert set(planted.exact) <= {(key, kept) for key, kept, reason in reference["duplicates"] if reason == "duplicate_text"}
    kept_as = {key: kept for key, kept, _ in reference["duplicates"]}
    texts = {row["id"]: row["text"] for rows in planted.sources.values() for row in rows}
    similar = [(a, b) for a, b in planted.near if jaccard(texts[a], texts[b]) >= 0.9]
    assert similar and all(kept_as.get(a, a) == kept_as.get(b, b) for a, b in similar)  # in their original's cluster
    assert not set(planted.controls) & {key for key, *_ in reference["duplicates"]}  # a shared template is not a copy
    summary = json.loads((tmp_path / "datatrove-3" / "summary.json").read_text())["stages"]["deduplicate"]
    assert summary["clusters"] == len({kept for _, kept, _ in reference["duplicates"]}) and summary["largest_cluster"] >= 2
    assert summary["duplicates_per_source"]["web"]["duplicate_text"] == len(planted.exact)


def teacher_section(teacher) -> GenerateConfig:
    return GenerateConfig(backend="openai", model="teacher", openai={"base_urls": [teacher.url]}, temperature=0.0, max_new_tokens=32)


@pytest.mark.slow
@pytest.mark.parametrize("engine, options", [("beam", {"workers": 1}), ("datatrove", {"workers": 2, "tasks": 2})])
def test_reuse_writes_each_copy_with_its_kept_documents_thinking_and_asks_once_per_cluster(tmp_path, teacher, engine, options):
    from tests.test_pipeline_beam import read_shards

    config = planted_config(tmp_path, originals=12, dedup=DedupConfig(duplicates="reuse"), generate=teacher_section(teacher))
    texts = {row["id"]: row["text"] for rows in plant_duplicates(12, max_words=400).sources.values() for row in rows}
    teacher.reset()
    summary = execute(config.with_output_dir(str(tmp_path / "out")), engine, **options)
    asked = teacher.stats()["requests"]

    samples = {sample["id"]: sample for sample in read_shards(tmp_path / "out", PLANTED_WEIGHTS)}
    manifest = pq.read_table(tmp_path / "out" / "manifest.parquet").to_pylist()
    copies = [row for row in manifest if row["duplicate_of"] is not None]
    assert summary["totals"]["rejected"] == 0 and len(samples) == summary["totals"]["read"]  # every copy is written
    assert {row["duplicate_kind"] for row in copies} == {"duplicate_text", "near_duplicate"}
    thinking_tokens = {row["id"]: row["thinking_tokens"] for row in manifest}
    for row in copies:
        copy, kept = samples[row["id"]], samples[row["duplicate_of"]]
        assert copy["thinking"] == kept["thinking"] and copy["thinking"]
        document, separator, thinking = copy["text"].rpartition("\n\n" + copy["thinking"])
        assert texts[row["id"]].startswith(document) and separator and not thinking  # [d; t] with its own d
        assert row["thinking_tokens"] == thinking_tokens[row["duplicate_of"]]
    assert asked == len(manifest) - len(copies)  # one request per cluster, none for a copy
    assert summary["stages"]["think"]["samples_reusing_thinking"] == len(copies)


@pytest.mark.slow
def test_a_rerun_with_a_source_that_copies_earlier_text_asks_nothing_for_it(tmp_path, teacher):
    """The copy in the new, heavier source becomes its cluster's kept document, and finds the stored thinking by
    what was asked, not by its id; a copy whose whitespace differs, by what its text asks once normalised."""
    planted = plant_duplicates(9, max_words=400)
    web = write_jsonl(tmp_path / "web.jsonl", planted.sources["web"])
    copies = [{"id": f"re-{row['id']}", "text": row["text"].replace(". ", ".  ") + "\n" if i % 2 else row["text"]}
              for i, row in enumerate(planted.sources["web"][:5])]  # every other one respaced
    assert sum(copy["text"] != row["text"] for copy, row in zip(copies, planted.sources["web"])) == 2
    reposted = write_jsonl(tmp_path / "reposted.jsonl", copies)
    first = PipelineConfig(sources=[SourceConfig(name="web", path=str(web))], generate=teacher_section(teacher),
                           output={"dir": str(tmp_path / "out")})
    teacher.reset()
    execute(first, "beam", workers=1)
    assert teacher.stats()["requests"] == len(planted.sources["web"])

    second = first.model_copy(update={"sources": [*first.sources, SourceConfig(name="reposted", path=str(reposted), weight=2.0)]})
    teacher.reset()
    summary = execute(second, "datatrove", workers=2, tasks=2)
    assert teacher.stats()["requests"] == 0
    assert summary["sources"]["reposted"]["written"] == 5 and summary["sources"]["web"]["rejects"]["deduplicate"] == {"duplicate_text": 5}
    assert summary["stages"]["think"]["requests_resumed"] == len(planted.sources["web"])


@pytest.mark.slow
def test_a_corpus_without_duplicates_gives_the_same_bytes_with_dedup_on_or_off(tmp_path, demo_run):
    on, on_summary = demo_run  # the demo, deduplication on as by default
    assert on.dedup.exact and on.dedup.near
    off = on.model_copy(update={"dedup": DedupConfig(exact=False, near=False)}).with_output_dir(str(tmp_path / "off"))
    off_summary = execute(off, "beam", workers=2)
    assert on_summary["totals"]["rejected"] == off_summary["totals"]["rejected"] == 0

    # what the fresh run wrote: each source's index (naming its shards), the shards and the manifest; the session's
    # run also holds shards that readers of it decompressed beside them
    files = sorted(Path(off.output.dir).glob("mds/**/*")) + [Path(off.output.dir) / "manifest.parquet"]
    written = {str(path.relative_to(off.output.dir)): path.read_bytes() for path in files if path.is_file()}
    assert written == {name: (Path(on.output.dir) / name).read_bytes() for name in written}
    assert "manifest.parquet" in written and sum(name.endswith("index.json") for name in written) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["beam", "datatrove"])
def test_killed_mid_generation_with_duplicates_then_rerun_asks_once_per_cluster(engine, tmp_path):
    """SIGKILL with requests in flight, then a rerun against a fresh server: the rerun asks for exactly the kept
    documents the store lacked, each is stored once, and every document, copies included, is in the shards once."""
    from tests.simulator import SimulatedServer
    from tests.test_pipeline_beam import read_streams
    from tests.test_think_resume import results, tpt_run

    planted = plant_duplicates(20)
    paths = planted.write(tmp_path)
    ids = sorted(row["id"] for rows in planted.sources.values() for row in rows)
    out = tmp_path / "out"

    def config(url: str) -> str:
        path = tmp_path / "config.yaml"
        path.write_text(json.dumps({
            "sources": [{"name": name, "path": str(file), "weight": PLANTED_WEIGHTS[name]} for name, file in paths.items()],
            "truncate": {"max_doc_tokens": 128}, "dedup": {"duplicates": "reuse"},
            "generate": {"backend": "openai", "model": "teacher", "chat": True, "max_new_tokens": 1000, "max_in_flight": 8,
                         "openai": {"base_urls": [url]}, "store": {"flush_every_docs": 1}}}))
        return str(path)

    with SimulatedServer(slots=4, rate=2000, mean_tokens=300) as first:
        tpt_run(config(first.url), out, kill_when=lambda: sum(results(out).values()) >= 6, engine=engine)
    stored = results(out)
    assert max(stored.values()) == 1
    with SimulatedServer(slots=4, rate=2000, mean_tokens=300) as second:
        tpt_run(config(second.url), out, engine=engine)
        asked_again = second.stats()["requests"]
    kept_ids = sorted(row["id"] for row in pq.read_table(out / "manifest.parquet").to_pylist() if row["duplicate_of"] is None)
    assert 6 <= len(stored) < len(kept_ids) < len(ids)  # the kill landed mid-generation; copies were not asked
    assert asked_again == len(kept_ids) - len(stored)  # only what the store lacked
    assert results(out) == dict.fromkeys(kept_ids, 1)
    _, samples = read_streams(str(out))
    assert sorted(sample["id"] for sample in samples) == ids


@pytest.mark.slow
def test_estimate_counts_what_deduplication_saved(tmp_path, teacher, capsys):
    """The sample run is the whole corpus, so the saving is each source's copies times its mean thinking (and prompt)."""
    import yaml

    from tpt.cli import main

    config = planted_config(tmp_path, originals=12, generate=teacher_section(teacher))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    summary = execute(config.with_output_dir(str(tmp_path / "run")), "beam", workers=1)
    assert main(["estimate", str(tmp_path / "config.yaml"), "--from", str(tmp_path / "run"), "--tokens-per-second", "10",
                 "--json", str(tmp_path / "estimate.json")]) == 0
    saved = json.loads((tmp_path / "estimate.json").read_text())["deduplication"]

    manifest = pq.read_table(tmp_path / "run" / "manifest.parquet").to_pylist()
    copies = {source: sum(counts.values()) for source, counts in summary["stages"]["deduplicate"]["duplicates_per_source"].items()}
    expected = sum(count * sum(row["thinking_tokens"] for row in manifest if row["source"] == source)
                   / sum(row["source"] == source for row in manifest) for source, count in copies.items())
    assert saved["duplicates"] == sum(copies.values()) > 0
    assert saved["thinking_tokens"][1] == pytest.approx(expected)
    assert saved["generation"]["gpu_hours"][1] == pytest.approx(expected / 10 / 3600)
    assert "documents are copies, never sent to the teacher" in capsys.readouterr().out
