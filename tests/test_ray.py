"""The datatrove engine on a real multi-node Ray cluster: a head and two worker nodes on this machine (the same
runtime as on several machines: one raylet and object store per node, actors, node failures, task resubmission).

A run on Ray writes what a local run writes, bad input set aside alike; reruns skip finished tasks; and a
worker node killed mid-generation costs only the requests it had in flight.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, outcome, write_jsonl
from tests.simulator import SimulatedServer
from tests.test_datatrove import outputs
from tests.test_pipeline_beam import read_streams
from tpt.cli import main as cli
from tpt.config import load_config
from tpt.generate.store import read_entries
from tpt.io.output import OutputLayout
from tpt.run import execute

WORKER_NODES = 2
TASKS = 2  # per job: one on each worker node
OBJECT_STORE = 80 * 2**20  # bytes per node; the smallest Ray accepts is 75 MiB
FAILURE_DETECTION = {"health_check_period_ms": 500, "health_check_failure_threshold": 4}  # a dead node is noticed in ~2 s
TIMEOUT = 120  # seconds for a condition the tests wait on

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a run that hangs fails the test instead of the suite


@pytest.fixture(scope="module")
def cluster():
    """A head that runs no task (it holds the cluster's control store, like a head of a real cluster) and two
    worker nodes of one CPU each, so a run's tasks are spread over both."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": OBJECT_STORE, "_system_config": FAILURE_DETECTION})
    for _ in range(WORKER_NODES):
        cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def published_bytes(out) -> dict[str, bytes]:
    """Every file a run published that depends on the data alone: shards, indexes, rejects, manifest."""
    layout = OutputLayout(out)
    names = [*layout.glob(f"{layout.mds}/**/*"), *layout.glob(f"{layout.rejects}/**/*"), layout.manifest]
    return {name: Path(layout.path(name)).read_bytes() for name in names if Path(layout.path(name)).is_file()}


@pytest.fixture(scope="module")
def local_and_ray(local_datatrove_run, teacher, cluster, tmp_path_factory):
    """The demo with bad input and thinking (a simulated teacher: the same thinking for the same request) on the
    local executor and on the cluster, two tasks each (a Ray task starts a fresh actor, which imports torch)."""
    local = local_datatrove_run
    on_ray = local.with_output_dir(str(tmp_path_factory.mktemp("ray")))
    asked = teacher.stats()["requests"]
    summary = execute(on_ray, "datatrove", executor="ray", tasks=TASKS, address=cluster.address)
    return local, on_ray, summary, teacher.stats()["requests"] - asked


def test_a_run_on_ray_writes_what_a_local_run_writes(local_and_ray):
    local, on_ray, summary, asked = local_and_ray
    theirs, ours = outputs(local.output.dir), outputs(on_ray.output.dir)
    assert len(ours["samples"]) == summary["totals"]["written"] > 0 and ours["rejects"]  # thinking and bad input to compare
    assert summary["stages"]["think"]["requests_generated"] == asked == summary["totals"]["written"]  # once each
    assert sum(s["thinking_tokens"] for s in ours["samples"].values()) > 10 * len(ours["samples"])
    assert ours == theirs
    assert published_bytes(on_ray.output.dir) == published_bytes(local.output.dir)  # byte for byte
    assert summary["engine"] == {"name": "datatrove", "executor": "ray", "tasks": TASKS, "workers": -1}


def test_a_finished_run_on_ray_reruns_as_a_no_op(local_and_ray, teacher, cluster):
    """datatrove's Ray executor honours the completion markers: no task runs again (none rewrites its stats or
    log in the logging dir), nothing is asked or written."""
    _, config, first, _ = local_and_ray
    out = Path(config.output.dir)

    def written() -> dict[Path, int]:
        files = [*out.glob(f"{OutputLayout.mds}/*/part-*/*.mds*"), *out.glob(".datatrove/logs/*/*/*")]
        return {p: p.stat().st_mtime_ns for p in files}

    before, asked = written(), teacher.stats()["requests"]
    # every task of the six jobs: read, prepare, buckets and stages run TASKS tasks; clusters and finalize one
    assert len([p for p in before if p.parent.name == "stats"]) == 4 * TASKS + 2
    assert execute(config, "datatrove", executor="ray", tasks=TASKS, address=cluster.address) == first
    assert written() == before
    assert teacher.stats()["requests"] == asked


def test_bad_input_is_set_aside_on_ray_as_on_the_local_executor(cluster, tmp_path, capsys):
    """Every reject class of the reader, a content-hash id, duplicates within and across sources, a truncation;
    the Ray run through the command line, `--address` and all."""
    from tests.test_datatrove import BAD_CORPUS_CONFIG, write_bad_corpus

    write_bad_corpus(tmp_path)
    (tmp_path / "config.yaml").write_text(BAD_CORPUS_CONFIG)
    config = load_config(tmp_path / "config.yaml")
    local, on_ray = config.with_output_dir(str(tmp_path / "local")), config.with_output_dir(str(tmp_path / "ray"))
    execute(local, "datatrove", tasks=TASKS, workers=2)
    ray_args = ["--engine", "datatrove", "--executor", "ray", "--address", cluster.address, "--tasks", str(TASKS)]
    assert cli(["run", str(tmp_path / "config.yaml"), "--output", on_ray.output.dir, *ray_args]) == 0
    assert "tpt run finished" in capsys.readouterr().out
    summary = OutputLayout(on_ray.output.dir).read_json(OutputLayout.summary)
    assert summary["stages"]["read"]["rejected"] == {
        "empty_text": 1, "invalid_utf8": 2, "malformed_json": 2, "missing_text": 1, "nul_bytes": 1, "too_large": 1}
    assert summary["stages"]["deduplicate"]["rejected"] == {"duplicate_id": 2}
    assert outputs(on_ray.output.dir) == outputs(local.output.dir)
    assert published_bytes(on_ray.output.dir) == published_bytes(local.output.dir)

    local_args = ["--engine", "datatrove", "--address", cluster.address]  # an address, but the local executor
    assert cli(["run", str(tmp_path / "config.yaml"), "--output", str(tmp_path / "other"), *local_args]) == 2
    assert "--address names a Ray cluster: use it with --executor ray, not local" in capsys.readouterr().err


def node_processes(node) -> list[psutil.Process]:
    """The raylet of a cluster node and every process it started (its workers and what they forked)."""
    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    return [raylet, *raylet.children(recursive=True)]


def test_a_worker_node_killed_mid_generation_costs_only_its_requests_in_flight(cluster, tmp_path):
    """Two stage tasks, one on each worker node, generate against a simulated teacher that counts what it is
    asked. Once one task has stored more results than it keeps in flight, its whole node is SIGKILLed (raylet,
    workers and their children: a machine lost) and a fresh node joins. Ray reports the lost actor, datatrove
    resubmits its task, and the resubmitted task resumes from the thinking store: every id is generated and in
    the shards once, and the teacher was asked again only for the requests lost in flight."""
    import ray

    docs, in_flight = 40, 4
    with open(ROOT / "data" / "demo" / "web.jsonl", encoding="utf-8") as stream:
        texts = [json.loads(line)["text"][:400] for line in stream]
    ids = [f"doc{i:02d}" for i in range(docs)]
    write_jsonl(tmp_path / "docs.jsonl", [{"id": i, "text": texts[n % len(texts)]} for n, i in enumerate(ids)])
    out, store = tmp_path / "out", tmp_path / "out" / "thinking"

    def stored_by_pid() -> Counter:
        return Counter(int(writer.split(".")[1]) for writer, entry in read_entries(store) if "raw" in entry)

    killed: dict = {}
    run_over = threading.Event()

    def kill_a_node_mid_generation() -> None:
        """SIGKILL the node of the first task (not on the driver's node) to store more than it keeps in flight."""
        driver = ray._private.worker.global_worker.node
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not run_over.is_set():
            counts = stored_by_pid() if store.is_dir() else Counter()
            for node in cluster.worker_nodes:
                if driver is not None and node._raylet_socket_name == driver._raylet_socket_name:
                    continue
                processes = node_processes(node)
                if (mine := sum(counts[p.pid] for p in processes)) > in_flight:
                    for process in processes:
                        os.kill(process.pid, signal.SIGKILL)
                    killed.update(node=node, stored=mine, all_stored=sum(counts.values()))
                    return
            time.sleep(0.05)

    with SimulatedServer(slots=16, rate=200, mean_tokens=200, sigma=0.3) as server:
        (tmp_path / "config.yaml").write_text(
            "sources: [{name: web, path: docs.jsonl}]\ntruncate: {max_doc_tokens: 64}\noutput: {parts: 2}\n"
            f"generate: {{backend: openai, model: teacher, base_urls: [{server.url}], chat: true, max_new_tokens: 1000, "
            f"max_in_flight: {in_flight}, flush_every_docs: 1}}\n")
        config = load_config(tmp_path / "config.yaml").with_output_dir(str(out))
        killer = threading.Thread(target=kill_a_node_mid_generation)
        killer.start()
        try:
            summary = execute(config, "datatrove", executor="ray", tasks=TASKS, address=cluster.address)
        finally:
            run_over.set()
            killer.join()
            if killed:  # the cluster again as the other tests found it
                cluster.remove_node(killed["node"], allow_graceful=False)
                cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
        asked = server.settled_requests(longest=1000 / 200)  # max_new_tokens / rate
    assert killed and killed["all_stored"] < docs  # the kill landed mid-generation
    stored = Counter(entry["id"] for _, entry in read_entries(store) if "raw" in entry)
    assert stored == Counter(ids)  # every result stored once
    assert sorted(s["id"] for s in read_streams(str(out))[1]) == ids  # every id in the shards once
    assert docs <= asked <= docs + in_flight < docs + killed["stored"]  # the killed task's stored results were not asked again
    assert summary["stages"]["think"]["requests_generated"] == docs


def test_ray_jobs_reserve_the_config_resources_and_import_ray_only_when_they_run(tmp_path):
    """GPUs for the stage tasks alone; and choosing the local executor, or building the Ray jobs, imports no Ray."""
    (tmp_path / "docs.jsonl").write_text(json.dumps({"id": "a", "text": "One document."}) + "\n")
    (tmp_path / "config.yaml").write_text(
        "sources: [{name: web, path: docs.jsonl}]\n"
        "datatrove: {ray: {cpus_per_task: 2, mem_per_cpu_gb: 1.5, gpus_per_task: 1}}\n")
    script = f"""
import sys
from tpt.config import load_config
from tpt.engines.datatrove.pipeline import DatatroveRun
from tpt.run.plan import RunPlan

plan = RunPlan.build(load_config({str(tmp_path / "config.yaml")!r}).with_output_dir({str(tmp_path / "out")!r}))
DatatroveRun(plan, "local", 2, 2).executors(0.0)
jobs = DatatroveRun(plan, "ray", 4, -1, address="10.0.0.1:6379").executors(0.0)
print([(job.job, job.tasks, job.cpus_per_task, job.mem_per_cpu_gb, job.gpus_per_task, job.address) for job in jobs])
print("ray" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    jobs, imported = result.stdout.splitlines()[-2:]
    address = "10.0.0.1:6379"
    assert ast.literal_eval(jobs) == [("read", 1, 2, 1.5, 0, address), ("prepare", 4, 2, 1.5, 0, address),
                                      ("buckets", 4, 2, 1.5, 0, address), ("clusters", 1, 2, 1.5, 0, address),
                                      ("stages", 4, 2, 1.5, 1, address), ("finalize", 1, 2, 1.5, 0, address)]
    assert imported == "False"


def test_a_task_that_fails_on_ray_fails_the_run_naming_its_job(cluster, tmp_path):
    """A classifier model gone between planning (the driver loads it) and the stage tasks (each loads its own): the
    tasks fail at set-up. datatrove's Ray executor would only log that, and the finalize job would wait for them
    forever; the run raises at once, naming the job and its logs, and publishes nothing."""
    from tpt.engines.datatrove import pipeline
    from tpt.run.plan import RunPlan

    models = tmp_path / "models"
    shutil.copytree(ROOT / "tpt" / "classify" / "models", models, ignore=shutil.ignore_patterns("*.json"))
    write_jsonl(tmp_path / "docs.jsonl", [{"id": f"d{i}", "text": f"Document {i} on algebra."} for i in range(4)])
    (tmp_path / "config.yaml").write_text(
        "sources: [{name: web, path: docs.jsonl}]\n"
        f"classify: {{models: {{domain: {models}, audience: {models}, reasoning: {models}}}}}\n")
    plan = RunPlan.build(load_config(tmp_path / "config.yaml").with_output_dir(str(tmp_path / "out")))
    (models / "domain.ftz").unlink()
    with pytest.raises(RuntimeError, match=r"2 of 2 Ray task\(s\) of the stages job did not finish .*/stages/logs/"):
        pipeline.run(plan, executor="ray", tasks=TASKS, address=cluster.address)
    assert not (tmp_path / "out" / OutputLayout.summary).exists()


def test_ray_keeps_the_same_copies_of_duplicated_text_as_beam(cluster, planted_run, tmp_path):
    config, _, beam = planted_run
    execute(config.with_output_dir(str(tmp_path / "ray")), "datatrove", executor="ray", tasks=TASKS, address=cluster.address)
    found = outcome(tmp_path / "ray")
    assert found == beam and found["duplicates"]
