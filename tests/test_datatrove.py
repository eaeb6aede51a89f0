"""The datatrove engine on the local executor gives the Beam engine's outputs: samples, manifest, rejects, counts."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import dill
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import ROOT, write_jsonl
from tests.test_pipeline_beam import read_shards
from tpt.cli import main as cli
from tpt.config import PipelineConfig, load_config
from tpt.engines.datatrove import pipeline as datatrove
from tpt.io.output import OutputLayout, read_rejects
from tpt.io.publish import STAGING, UNPUBLISHED
from tpt.run import execute
from tpt.run.plan import RunPlan
from tpt.stages import build_stages, output_fields

RUN_DEPENDENT = ("wall_seconds", "docs_per_second", "engine", "output")  # summary keys that name the run, not the data


def outputs(out) -> dict:
    """Everything a run wrote to the local folder `out` that must not depend on the engine, in comparable form."""
    layout = OutputLayout(out)
    streams = yaml.safe_load(layout.read_text(layout.streams))["streams"]
    samples = read_shards(out, streams)
    summary = layout.read_json(layout.summary)
    return {
        "samples": {s["id"]: s for s in samples},
        "fields": sorted(samples[0]) if samples else [],
        "manifest": layout.read_parquet(layout.manifest).to_pylist(),
        "rejects": sorted(read_rejects(layout), key=lambda r: json.dumps(r, sort_keys=True)),
        "streams": {name: {k: v for k, v in s.items() if k not in ("local", "remote")} for name, s in streams.items()},
        "summary": {k: v for k, v in summary.items() if k not in RUN_DEPENDENT} | {  # a stage's own report may time it
            "stages": {name: {"rejected": stage.get("rejected", {})} for name, stage in summary["stages"].items()},
            "config": {**{k: v for k, v in summary["config"].items() if k != "datatrove"},  # the run's folder and engine aside
                       "output": {k: v for k, v in summary["config"]["output"].items() if k != "dir"}}},
        "parts": layout.glob(f"{layout.mds}/*/part-*"),
    }


@pytest.fixture(scope="module")
def beam_and_datatrove(full_run, tmp_path_factory):
    """The demo with bad input and thinking (from a simulated teacher: the same thinking for the same request)
    through both engines; datatrove with as many tasks as output parts, 2 at a time."""
    beam_config, _ = full_run
    datatrove_config = beam_config.with_output_dir(str(tmp_path_factory.mktemp("datatrove")))
    summary = execute(datatrove_config, "datatrove", tasks=beam_config.output.parts, workers=2)
    return beam_config, datatrove_config, summary


def test_demo_outputs_equal_beam_outputs(beam_and_datatrove):
    beam_config, datatrove_config, summary = beam_and_datatrove
    beam, ours = outputs(beam_config.output.dir), outputs(datatrove_config.output.dir)
    stages = build_stages(datatrove_config)
    assert ours["fields"] == sorted(output_fields(datatrove_config, stages))  # every field each stage adds is compared
    assert {"thinking", "thinking_tokens", "finish_reason", "sample_tokens"} <= set(ours["fields"])
    assert ours["samples"].keys() == beam["samples"].keys() and len(ours["samples"]) == summary["totals"]["written"] > 0
    # thinking ran for every sample (the simulated teacher's answers can be cut to nothing, but not all of them)
    assert summary["stages"]["think"]["requests_generated"] == summary["totals"]["written"]
    assert all(s["finish_reason"] in ("stop", "length") for s in ours["samples"].values())
    assert sum(s["thinking_tokens"] for s in ours["samples"].values()) > 10 * len(ours["samples"])
    assert ours["rejects"]  # the bad lines: there are rejects to compare
    for doc_id, sample in ours["samples"].items():
        assert sample == beam["samples"][doc_id], doc_id
    for key in ("manifest", "rejects", "streams", "summary", "parts"):
        assert ours[key] == beam[key], key
    assert summary["engine"] == {"name": "datatrove", "executor": "local", "tasks": datatrove_config.output.parts, "workers": 2}


def test_one_worker_and_one_task_write_what_beam_writes(full_run, tmp_path):
    """With one local worker datatrove runs the tasks in the driver, then copies the plan, its stages set up, for
    the next job: each stage pickles as its configuration only (a loaded fastText model, a backend's threads and
    connections do not pickle)."""
    beam_config, _ = full_run
    config = beam_config.with_output_dir(str(tmp_path / "one worker"))
    summary = execute(config, "datatrove", tasks=1, workers=1)
    beam, ours = outputs(beam_config.output.dir), outputs(config.output.dir)
    assert summary["totals"]["written"] == len(beam["samples"]) > 0
    for key in ("samples", "manifest", "rejects"):
        assert ours[key] == beam[key], key


def test_tasks_write_a_url_output_that_equals_a_local_one(beam_and_datatrove, gcs_bucket, tmp_path):
    """To gs:// (a local Cloud Storage server): the MDS parts, rejects, shuffle files and datatrove's own logs."""
    _, local_config, _ = beam_and_datatrove
    url = f"{gcs_bucket}/datatrove-{tmp_path.name}"
    summary = execute(local_config.with_output_dir(url), "datatrove", tasks=local_config.output.parts, workers=2)
    layout = OutputLayout(url)
    assert summary["output"] == url
    assert len(layout.glob(f"{datatrove.WORK}/logs/stages/completions/*")) == local_config.output.parts
    assert not layout.glob(f"{datatrove.WORK}/{datatrove.SHUFFLE}/*")  # spent once merged
    layout.fs.get(layout.path(), str(tmp_path / "copy"), recursive=True)
    copy, local = outputs(tmp_path / "copy"), outputs(local_config.output.dir)
    assert copy["rejects"] and sum(s["thinking_tokens"] for s in copy["samples"].values()) > 0  # something to compare
    assert copy == local


def test_a_finished_run_reruns_as_a_no_op_and_a_changed_config_starts_over(beam_and_datatrove):
    _, config, first = beam_and_datatrove
    out = Path(config.output.dir)
    mds = out / OutputLayout.mds
    shards = {p: p.stat().st_mtime_ns for p in mds.glob("*/part-*/*.mds*")}
    assert shards and execute(config, "datatrove", tasks=config.output.parts, workers=2) == first
    assert {p: p.stat().st_mtime_ns for p in mds.glob("*/part-*/*.mds*")} == shards
    assert not (out / datatrove.WORK / "shuffle").exists()  # spent once merged

    # what a kill inside finalize leaves: the run staged, its manifest merged and its parts deleted, no summary,
    # not published, no completion marker (and the previous run, here the same one, still published)
    before = outputs(config.output.dir)
    staging = out / STAGING
    for name in (OutputLayout.mds, OutputLayout.rejects, OutputLayout.manifest):
        shutil.copytree(out / name, staging / name) if (out / name).is_dir() else shutil.copy(out / name, staging / name)
    (staging / UNPUBLISHED).write_text("")
    (out / datatrove.WORK / "logs" / "finalize" / "completions" / "00000").unlink()
    assert execute(config, "datatrove", tasks=config.output.parts, workers=2)["totals"] == first["totals"]
    assert outputs(config.output.dir) == before and not staging.exists()  # finalized again, and published

    fewer_tasks = execute(config, "datatrove", tasks=3, workers=2)  # another plan: not a resume of the first
    assert sorted(p.name for p in mds.glob("web/part-*")) == ["part-00000", "part-00001", "part-00002"]
    assert fewer_tasks["sources"] == first["sources"] and fewer_tasks["totals"] == first["totals"]


BAD_CORPUS_CONFIG = ("sources:\n  - {name: a, path: a.jsonl}\n  - {name: b, path: b.parquet, weight: 3}\n"
                     "truncate: {max_doc_tokens: 64, max_doc_bytes: 1500}\noutput: {parts: 3}\n")


def write_bad_corpus(folder: Path) -> None:
    """Every reject class of the reader, a content-hash id, duplicates within and across sources, truncations:
    a.jsonl and b.parquet in `folder`, read by BAD_CORPUS_CONFIG."""
    write_jsonl(folder / "a.jsonl", [
        {"id": "a1", "text": "Alpha document one."}, {"text": "No id here: named by a content hash."},
        '{"id": "cut", "text": ', json.dumps([1, 2]), {"id": "m", "body": "no text field"}, {"id": "e", "text": "   "},
        {"id": "n", "text": "nul\u0000inside"}, {"id": "s", "text": "lone \ud800 surrogate"},
        {"id": "dup", "text": "the copy of source a"}, {"id": "long", "text": "word " * 250}, {"id": "huge", "text": "word " * 400},
    ])
    with open(folder / "a.jsonl", "ab") as stream:
        stream.write(b'{"id": "u", "text": "caf\xe9"}\n')
    pq.write_table(pa.table({"id": ["dup", "b1", "b1", None], "text": ["the copy of source b", "beta", "beta again", "gamma"]}),
                   folder / "b.parquet")


def test_bad_input_and_thinking_give_the_same_rejects_ids_and_samples_as_beam(tmp_path):
    """The bad corpus with thinking, on both engines."""
    write_bad_corpus(tmp_path)
    (tmp_path / "config.yaml").write_text(
        BAD_CORPUS_CONFIG
        # thinking, deterministic: greedy, one sequence per generate call (no padding), a few tokens
        + "generate: {temperature: 0.0, max_new_tokens: 4, transformers: {micro_batch_size: 1}}\n"
    )
    from tpt.run import execute

    config = load_config(tmp_path / "config.yaml")
    beam_config, datatrove_config = config.with_output_dir(str(tmp_path / "beam")), config.with_output_dir(str(tmp_path / "dt"))
    execute(beam_config, workers=2)
    summary = execute(datatrove_config, "datatrove", tasks=2, workers=2)
    beam, ours = outputs(beam_config.output.dir), outputs(datatrove_config.output.dir)
    for key in ("samples", "manifest", "rejects", "streams", "summary"):
        assert ours[key] == beam[key], key
    assert summary["stages"]["read"]["rejected"] == {
        "empty_text": 1, "invalid_utf8": 2, "malformed_json": 2, "missing_text": 1, "nul_bytes": 1, "too_large": 1}
    assert summary["stages"]["deduplicate"]["rejected"] == {"duplicate_id": 2}
    assert summary["totals"] | {"read": 16, "written": 6, "rejected": 10, "truncated": 1} == summary["totals"]
    assert all(sample["thinking_tokens"] > 0 and sample["text"].endswith(sample["thinking"]) for sample in ours["samples"].values())


def test_slurm_dry_run_prints_dependent_job_arrays_and_submits_nothing(tmp_path, capsys):
    config = {"sources": [{"name": "books", "path": str(ROOT / "data" / "demo" / "books.jsonl")}]}
    config["datatrove"] = {"logging_dir": str(tmp_path / "logs"), "slurm": {
        "partition": "h100", "time": "02:00:00", "cpus_per_task": 4, "gpus_per_task": 1, "job_name": "tpt-demo"}}
    (tmp_path / "slurm.yaml").write_text(yaml.safe_dump(config))

    out = str(tmp_path / "out")
    args = ["--engine", "datatrove", "--executor", "slurm", "--output", out]
    assert cli(["run", str(tmp_path / "slurm.yaml"), *args, "--tasks", "16", "--dry-run"]) == 0
    scripts = capsys.readouterr().out.split("# job ")[1:]
    jobs = ["read", "prepare", "buckets", "clusters", "stages", "finalize"]  # deduplication's three between read and stages
    assert [s.split(":")[0] for s in scripts] == [f"tpt-demo-{job}" for job in jobs]
    arrays, gpus_of = ("0-0", "0-15", "0-15", "0-0", "0-15", "0-0"), (False, False, False, False, True, False)
    for script, array, gpus in zip(scripts, arrays, gpus_of, strict=True):
        assert "#SBATCH --partition=h100\n" in script and "#SBATCH --time=02:00:00\n" in script
        assert "#SBATCH --cpus-per-task=4\n" in script and f"#SBATCH --array={array}\n" in script
        assert ("#SBATCH --gpus=1\n" in script) == gpus
        assert f"source {sys.prefix}/bin/activate" in script and "launch_pickled_pipeline" in script
    for previous, script in zip(jobs, scripts[1:]):
        assert f"--dependency=afterok:<job id of tpt-demo-{previous}>" in script
    assert not (tmp_path / "out").exists()

    del config["datatrove"]
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(config))
    assert cli(["run", str(tmp_path / "local.yaml"), *args]) == 2
    assert "needs a `datatrove.slurm` section" in capsys.readouterr().err
    assert cli(["run", str(tmp_path / "local.yaml"), "--output", out, "--tasks", "3"]) == 2  # not a Beam option
    assert "--tasks is an option of --engine datatrove, not beam" in capsys.readouterr().err


def test_slurm_jobs_pickle_as_datatrove_submits_them(demo_config, tmp_path):
    """A Slurm task runs the executor dill-pickled at submission: every step, stage included, must survive that."""
    config = PipelineConfig.model_validate(
        {**demo_config.model_dump(), "output": {"dir": str(tmp_path / "out")}, "datatrove": {"slurm": {"partition": "p"}}})
    executors = datatrove.DatatroveRun(RunPlan.build(config, check=False), "slurm", 4, -1).executors(0.0)
    copies = [dill.loads(dill.dumps(executor)) for executor in executors]
    assert [[type(step).__name__ for step in c.pipeline] for c in copies] == [
        ["ReadSources", "ScatterById"],
        ["GatherById", "ApplyStage", "Sign"],  # truncate, then deduplication's signatures
        ["VerifyBuckets"],
        ["Cluster"],
        ["ApplyDedup", *("ApplyStage" for _ in build_stages(config)[1:]), "WriteParts"],
        ["Finalize"],
    ]
    assert [c.world_size for c in copies] == [3, 4, 4, 1, 4, 1]
