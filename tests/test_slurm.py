"""The datatrove engine on a live Slurm cluster: a controller and two nodes of one CPU on this machine
(scripts/slurm-cluster.sh), submitted to with sbatch as on any cluster.

A run on Slurm writes what a local run writes; a rerun submits nothing that is complete; an array task cancelled
mid-generation, a node lost mid-run and a task that fails late each end as the docs say, with every id generated
and written once; and teacher servers started as Slurm jobs come and go while a run goes on.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import ROOT, SLURM_CLUSTER, write_jsonl
from tests.simulator import SimulatedServer
from tests.test_datatrove import outputs
from tests.test_pipeline_beam import read_streams
from tests.test_ray import published_bytes
from tests.test_think_resume import results, write_docs
from tpt.cli import main as cli
from tpt.config import DatatroveConfig, SlurmConfig
from tpt.io.lock import LOCK
from tpt.io.output import OutputLayout, part_of
from tpt.run.status import FAILED, FINISHED, RUNNING_STATE, run_status
from tpt.slurm import still_queued

TASKS = 2  # per job: one on each node
TIMEOUT = 300  # seconds for a condition the tests wait on
wait_until = functools.partial(conftest.wait_until, deadline=TIMEOUT, every=0.1)  # conditions ask squeue or read the store
SLURM = {"partition": "debug", "time": "00:20:00"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a run that hangs fails the test instead of the suite


def submit(config_path: Path, out: Path, *args: str) -> dict[str, list[str]]:
    """`tpt run CONFIG --engine datatrove --executor slurm`: the Slurm job ids of each job it says it submitted."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli(["run", str(config_path), "--output", str(out), "--engine", "datatrove", "--executor", "slurm",
                    "--tasks", str(TASKS), *args]) == 0
    text = printed.getvalue()
    assert f"follow: tpt progress {shlex.quote(str(out))}" in text and "cancel: scancel " in text, text
    return {name: ids.split(":") for name, ids in re.findall(r"^\s+(\w+)\s+job ([\d:]+):", text, re.MULTILINE)}


def finished(out: Path) -> dict:
    """Wait for the run in `out` to finish (failing at once if it failed or died); its summary."""
    def over() -> bool:
        status = run_status(OutputLayout(out))
        assert status is not None and status.state in (RUNNING_STATE, FINISHED), status.render() if status else "no run"
        return status.state == FINISHED

    wait_until(over, f"the run in {out} finished")
    return OutputLayout(out).read_json(OutputLayout.summary)


def all_ended(jobs: dict[str, list[str]]) -> bool:
    return not still_queued([job_id for ids in jobs.values() for job_id in ids])


def squeue(job_id: str, fields: str) -> list[str]:
    done = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", job_id, "-o", fields], capture_output=True, text=True, check=True)
    return done.stdout.split()


def slurm_jobs() -> set[str]:
    return set(subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True, check=True).stdout.split())


@pytest.fixture(scope="module")
def local_and_slurm(slurm_cluster, local_datatrove_run, teacher, tmp_path_factory):
    """The demo with bad input and thinking (a simulated teacher: the same thinking for the same request) on the local
    executor and on the cluster, two tasks each."""
    local = local_datatrove_run
    on_slurm = local.model_copy(update={"datatrove": DatatroveConfig(slurm=SlurmConfig(**SLURM))})
    out = tmp_path_factory.mktemp("slurm") / "out dir"  # a path with a space
    folder = out.parent
    (folder / "config.yaml").write_text(json.dumps(on_slurm.model_dump(mode="json")))
    asked = teacher.stats()["requests"]
    jobs = submit(folder / "config.yaml", out)
    summary = finished(out)
    return local, out, folder / "config.yaml", jobs, summary, teacher.stats()["requests"] - asked


def test_a_run_on_slurm_writes_what_a_local_run_writes_using_both_nodes(local_and_slurm, capsys):
    local, out, _, jobs, summary, asked = local_and_slurm
    assert list(jobs) == ["read", "prepare", "buckets", "clusters", "stages", "finalize"]  # deduplication's three too
    theirs, ours = outputs(local.output.dir), outputs(out)
    assert len(ours["samples"]) == summary["totals"]["written"] > 0 and ours["rejects"]  # thinking and bad input to compare
    assert summary["stages"]["think"]["requests_generated"] == asked == summary["totals"]["written"]  # once each
    assert ours == theirs
    assert published_bytes(out) == published_bytes(local.output.dir)  # byte for byte
    assert summary["engine"] == {"name": "datatrove", "executor": "slurm", "tasks": TASKS, "workers": -1}
    (stages,) = jobs["stages"]
    assert sorted(squeue(stages, "%N")) == ["n1", "n2"]  # one stage task on each node
    assert set(squeue(stages, "%T")) == {"COMPLETED"}
    assert not (out / LOCK).exists()  # the finalize job released the run's lock
    assert cli(["progress", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"finished: read {summary['totals']['read']}, written ")


def test_a_rerun_of_a_finished_run_submits_nothing(local_and_slurm, teacher, capsys):
    _, out, config, _, first, _ = local_and_slurm
    files = [*out.glob(f"{OutputLayout.mds}/*/part-*/*.mds*"), *out.glob(".datatrove/logs/*/*/*")]
    before, asked, queued = {p: p.stat().st_mtime_ns for p in files}, teacher.stats()["requests"], slurm_jobs()
    assert len([p for p in before if p.parent.name == "completions"]) == 4 * TASKS + 2  # every task of the six jobs
    assert cli(["run", str(config), "--output", str(out), "--engine", "datatrove", "--executor", "slurm", "--tasks", str(TASKS)]) == 0
    shown = capsys.readouterr().out
    assert "submitted" not in shown and shown.startswith("tpt run finished in ")  # the finished run's summary
    assert OutputLayout(out).read_json(OutputLayout.summary) == first
    assert slurm_jobs() == queued and teacher.stats()["requests"] == asked
    assert {p: p.stat().st_mtime_ns for p in files} == before


def thinking_config(folder: Path, url: str, in_flight: int, **slurm) -> Path:
    path = folder / "config.yaml"
    path.write_text(
        "sources: [{name: web, path: docs.jsonl}]\ntruncate: {max_doc_tokens: 64}\noutput: {parts: 2}\n"
        "dedup: {exact: false, near: false}\n"  # the stages job is what these tests kill: no deduplication jobs before it
        f"generate: {{backend: openai, model: teacher, base_urls: [{url}], chat: true, max_new_tokens: 1000, "
        f"max_in_flight: {in_flight}, flush_every_docs: 1}}\n"
        f"datatrove: {{slurm: {json.dumps({**SLURM, **slurm})}}}\n")
    return path


def assert_each_once(out: Path, ids: list[str]) -> None:
    assert results(out) == Counter(ids)  # every result stored once
    assert sorted(s["id"] for s in read_streams(str(out))[1]) == ids  # every id in the shards once


def test_an_array_task_cancelled_mid_generation_then_a_rerun_stores_and_writes_every_id_once(slurm_cluster, tmp_path, capsys):
    """scancel of one stage task while it generates: the run fails visibly (the finalize job is cancelled with it,
    none waits forever); the same command again submits that task and the finalize job only, and the teacher is
    asked again at most for what the cancelled task had in flight."""
    docs, in_flight = 40, 4
    ids = write_docs(tmp_path, docs, chars=400)
    out = tmp_path / "out"
    task_ids = [i for i in ids if part_of(i, TASKS) == 1]  # what stage task 1 generates
    with SimulatedServer(slots=16, rate=200, mean_tokens=300, sigma=0.3) as server:
        config = thinking_config(tmp_path, server.url, in_flight)
        jobs = submit(config, out)
        (stages,) = jobs["stages"]
        wait_until(lambda: sum(results(out, task_ids).values()) > in_flight, "stage task 1 generating")
        subprocess.run(["scancel", f"{stages}_1"], check=True)
        cancelled_with = sum(results(out, task_ids).values())
        wait_until(lambda: all_ended(jobs), "every job of the run ended")
        assert cancelled_with < len(task_ids)  # the cancel landed mid-generation

        assert cli(["progress", str(out)]) == 1
        shown = capsys.readouterr().out
        assert shown.startswith("failed: 1 Slurm task(s) did not finish; once the cause is fixed, rerun the same command")
        assert f"  stages task 1 (Slurm {stages}_1 on n" in shown and ": CANCELLED" in shown
        logs = out / ".datatrove" / "logs" / "stages"
        assert f"log {logs}/logs/task_00001.log, Slurm's {logs}/slurm_logs/{stages}_1.out" in shown
        assert "finalize  job " in shown and "1 cancelled" in shown  # the job after it ended too

        again = submit(config, out)  # the failed run's lock is stale: its jobs have all ended
        assert list(again) == ["stages", "finalize"]
        finished(out)
        asked = server.settled_requests(longest=1000 / 200)  # max_new_tokens / rate
    assert_each_once(out, ids)
    assert docs <= asked <= docs + in_flight


def test_a_node_lost_mid_run_is_requeued_by_slurm_and_the_run_completes(slurm_cluster, tmp_path):
    """Node n2's slurmd and every process of its job killed while its stage task generates (a machine lost). Slurm
    declares the node down and requeues the task (datatrove submits with --requeue), which runs again on n1 and
    resumes from the thinking store: the run completes with no rerun, every id generated and written once."""
    docs, in_flight = 40, 4
    ids = write_docs(tmp_path, docs, chars=400)
    out = tmp_path / "out"
    with SimulatedServer(slots=16, rate=200, mean_tokens=300, sigma=0.3) as server:
        jobs = submit(thinking_config(tmp_path, server.url, in_flight), out)
        (stages,) = jobs["stages"]

        def task_on_n2() -> int | None:
            running = [line.split("|") for line in squeue(stages, "%K|%N|%T")]
            return next((int(index) for index, node, state in running if node == "n2" and state == "RUNNING"), None)

        wait_until(lambda: task_on_n2() is not None, "a stage task running on n2")
        rank = task_on_n2()
        task_ids = [i for i in ids if part_of(i, TASKS) == rank]
        wait_until(lambda: sum(results(out, task_ids).values()) > in_flight, f"stage task {rank} generating on n2")
        try:
            subprocess.run([SLURM_CLUSTER, "kill-node", "n2"], check=True)
            lost_with = sum(results(out, task_ids).values())
            summary = finished(out)
        finally:
            subprocess.run([SLURM_CLUSTER, "start"], check=True)  # n2 back for the tests after this one
        asked = server.settled_requests(longest=1000 / 200)  # max_new_tokens / rate
    assert lost_with < len(task_ids)  # the node was lost mid-generation
    show = subprocess.run(["scontrol", "show", "job", f"{stages}_{rank}"], capture_output=True, text=True, check=True).stdout
    assert "Restarts=1" in show and "NodeList=n1" in show  # requeued by Slurm, and run on the node left
    assert_each_once(out, ids)
    assert docs <= asked <= docs + in_flight
    assert summary["totals"]["written"] == docs


def test_a_task_that_fails_late_fails_the_run_visibly_and_a_rerun_takes_its_lock_over(slurm_cluster, tmp_path, capsys):
    """An input file gone between planning and its read task (the jobs are submitted held, with an extra sbatch line,
    so the file goes before any task starts): that read task fails, the jobs after it are cancelled at once, and
    `tpt progress` names the task and its log. With one task an array, every job is two arrays, and the failed task
    is in the first: the jobs after it wait for all of a job's arrays, not only its last. The failed run's lock does
    not block the next run."""
    write_jsonl(tmp_path / "a.jsonl", [{"id": f"a{i}", "text": f"Document a{i}."} for i in range(5)])
    write_jsonl(tmp_path / "b.jsonl", [{"id": f"b{i}", "text": f"Document b{i}."} for i in range(5)])
    config = tmp_path / "config.yaml"
    out = tmp_path / "out"
    common = "sources: [{name: web, path: '*.jsonl'}]\noutput: {parts: 2}\ndedup: {exact: false, near: false}\n"
    held = {**SLURM, "max_array_size": 1, "sbatch_args": {"hold": ""}}
    config.write_text(common + f"datatrove: {{slurm: {json.dumps(held)}}}\n")
    jobs = submit(config, out)
    assert [len(jobs[name]) for name in ("read", "stages", "finalize")] == [2, 2, 1]
    assert cli(["progress", str(out)]) == 0
    assert "  read      job " in capsys.readouterr().out
    (tmp_path / "a.jsonl").rename(tmp_path / "a.moved")  # read task 0's file
    subprocess.run(["scontrol", "release", *(job_id for ids in jobs.values() for job_id in ids)], check=True)
    wait_until(lambda: all_ended(jobs), "every job of the run ended (none waits on the failed one)", deadline=120)

    assert cli(["progress", str(out)]) == 1
    shown = capsys.readouterr().out
    first_array = jobs["read"][0]
    assert shown.startswith("failed: 1 Slurm task(s) did not finish")
    assert f"  read task 0 (Slurm {first_array}_0 on n" in shown and "FAILED (NonZeroExitCode)" in shown
    log = out / ".datatrove" / "logs" / "read" / "logs" / "task_00000.log"
    assert f"log {log}, " in shown and "a.jsonl" in log.read_text()  # the log says which file
    assert shown.count("cancelled (DependencyNeverSatisfied)") == 2  # stages and finalize ended with it
    assert run_status(OutputLayout(out)).state == FAILED and not (out / OutputLayout.summary).exists()

    (tmp_path / "a.moved").rename(tmp_path / "a.jsonl")
    config.write_text(common + f"datatrove: {{slurm: {json.dumps(SLURM)}}}\n")  # its datatrove section aside, the same run
    again = submit(config, out)
    assert list(again) == ["read", "stages", "finalize"] and len(again["read"]) == 1
    assert finished(out)["totals"]["written"] == 10


def test_teacher_servers_started_as_slurm_jobs_come_and_go_while_a_run_goes_on(slurm_cluster, tmp_path):
    """The documented recipe (scripts/slurm-serve.sh) with the simulator in place of `vllm serve`: one server listed
    when the run starts; a second, started mid-run, gets requests within seconds of listing itself; the first is
    cancelled mid-run (its script unlists it and stops it; the requests it had in flight are retried on the second).
    Nothing is lost, nothing generated twice."""
    docs, in_flight = 60, 8
    ids = write_docs(tmp_path, docs, chars=400)
    servers, out = tmp_path / "servers.txt", tmp_path / "out"
    servers.write_text("")

    def start_server() -> str:
        done = subprocess.run(
            ["sbatch", "--parsable", f"--chdir={ROOT}", f"--output={tmp_path}/serve-%j.out",
             "--export=ALL,TPT_SERVE_HOST=127.0.0.1", str(ROOT / "scripts" / "slurm-serve.sh"), str(servers),
             sys.executable, "-m", "tests.simulator", "--slots", "16", "--rate", "200", "--mean-tokens", "300",
             "--sigma", "0.3", "--port", "{port}"], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def listed() -> list[str]:
        return servers.read_text().split()

    def requests_at(url: str) -> int:
        from urllib.request import urlopen

        with urlopen(url.removesuffix("/v1") + "/stats", timeout=30) as answer:
            return json.loads(answer.read())["requests"]

    first_job = start_server()
    try:
        wait_until(lambda: len(listed()) == 1, "the first server listed")
        (first,) = listed()
        (tmp_path / "config.yaml").write_text(
            "sources: [{name: web, path: docs.jsonl}]\ntruncate: {max_doc_tokens: 64}\noutput: {parts: 2}\n"
            f"generate: {{backend: openai, model: teacher, openai: {{base_urls_file: {servers}}}, chat: true, "
            f"max_new_tokens: 1000, max_in_flight: {in_flight}, flush_every_docs: 1}}\n")
        run = subprocess.Popen([sys.executable, "-m", "tpt.cli", "run", str(tmp_path / "config.yaml"), "--output", str(out),
                                "--engine", "datatrove", "--workers", "2", "--tasks", "2"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        second_job = start_server()
        try:
            wait_until(lambda: len(listed()) == 2, "the second server listed")
            second = next(url for url in listed() if url != first)
            listed_at = time.monotonic()
            assert sum(results(out).values()) < docs - 2 * in_flight  # the run is under way, far from done
            wait_until(lambda: requests_at(second) > 0, "a request at the second server", deadline=30)
            assert time.monotonic() - listed_at < 10  # within seconds
            subprocess.run(["scancel", first_job], check=True)
            wait_until(lambda: listed() == [second], "the first server unlisted as its job ended")
            assert sum(results(out).values()) < docs  # mid-run
            assert run.wait(timeout=TIMEOUT) == 0, run.stdout.read()
        finally:
            subprocess.run(["scancel", second_job], check=True)
        wait_until(lambda: listed() == [], "the second server unlisted as its job ended")
    finally:
        subprocess.run(["scancel", first_job], check=True)
    assert_each_once(out, ids)
    summary = OutputLayout(out).read_json(OutputLayout.summary)
    assert summary["stages"]["think"]["requests_generated"] == docs and summary["totals"]["written"] == docs
    think = summary["stages"]["think"]
    assert set(think["servers"]) == {first, second} and think["servers"][first]["failed_attempts"] >= 1
    assert think["requests_retried"] >= 1  # what the first had in flight when it went, answered by the second


def test_without_slurm_these_tests_fail_in_ci_and_skip_elsewhere_saying_why(tmp_path):
    """A test on the cluster run where no Slurm command is on the PATH: in CI (CI=true) it errors, naming what is
    missing; elsewhere it is skipped with the same reason."""
    (tmp_path / "test_on_slurm.py").write_text("def test_on_the_cluster(slurm_cluster):\n    pass\n")
    without = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # the venv's commands alone
    runs = {ci: subprocess.Popen([sys.executable, "-m", "pytest", "-rs", "-p", "tests.conftest", "-p", "no:cacheprovider",
                                  str(tmp_path / "test_on_slurm.py")], cwd=ROOT, env=without | {"CI": ci},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for ci in ("true", "")}
    said = {ci: run.communicate(timeout=TIMEOUT)[0] for ci, run in runs.items()}
    reason = "Slurm is not installed: `scripts/slurm-cluster.sh start` installs slurm-wlm and munge and starts a cluster"
    assert runs["true"].returncode == 1 and "1 error" in said["true"] and f"CI runs the Slurm tests: {reason}" in said["true"]
    assert runs[""].returncode == 0 and "1 skipped" in said[""] and reason in said[""]
