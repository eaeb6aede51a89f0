"""Shared fixtures: the demo config, small corpora, and one demo pipeline run per session."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tpt.config import PipelineConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"


def wait_until(condition, what: str, deadline: float = 60.0, every: float = 0.01) -> float:
    """Poll `condition()` every `every` seconds until it holds, failing after `deadline` seconds with `what` was
    awaited; returns the time.monotonic() it was seen holding."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"not within {deadline:g} s: {what}"
        time.sleep(every)
    return time.monotonic()


class StreamingCleanups:
    """Stands in for `atexit` in streaming's shared-memory module, to release a test's StreamingDatasets after it.

    streaming registers each dataset's shared memory (the blocks it creates and those it attaches to) with
    `atexit`, so a process holds it open until it exits, and each new dataset opens every block it finds: across a
    whole session, thousands of open files. Here the cleanups wait in a list and run once the test is over; a block
    a dataset still in use maps stays (closing it raises BufferError) until a later test ends.
    """

    def __init__(self):
        self.pending: list = []

    def register(self, cleanup, *args, **kwargs):
        self.pending.append(cleanup)

    def run(self) -> None:
        waiting, self.pending = self.pending, []
        for cleanup in waiting:
            try:
                cleanup()
            except BufferError:
                self.pending.append(cleanup)


STREAMING_CLEANUPS = StreamingCleanups()


@pytest.fixture(autouse=True)
def streaming_shared_memory_released():
    memory = sys.modules.get("streaming.base.shared.memory")
    if memory is not None:
        memory.atexit = STREAMING_CLEANUPS
    yield
    STREAMING_CLEANUPS.run()


def pytest_sessionfinish(session, exitstatus):
    """Stop the threads of every StreamingDataset a test stopped reading mid-epoch.

    The interpreter joins them as it exits, and streaming's ready thread, waiting for a shard, looks only at the
    dataset's failure event, not at whether the process is exiting: if its download thread has already stopped,
    the exit would wait forever. The failure event stops both.
    """
    streaming = sys.modules.get("streaming")
    if streaming is None:
        return
    for dataset in gc.get_objects():
        if isinstance(dataset, streaming.StreamingDataset) and hasattr(dataset, "_event"):
            dataset._event.set()


@pytest.fixture(scope="session")
def demo_config() -> PipelineConfig:
    """The demo config without thinking generation: minutes of CPU generation would buy the
    tests that use it nothing; the thinking tests run the think stage on their own configs."""
    return load_config(DEMO_CONFIG).model_copy(update={"generate": None})


@pytest.fixture(scope="session")
def demo_run(demo_config, tmp_path_factory) -> tuple[PipelineConfig, dict]:
    """The demo config through the Beam pipeline (2 worker processes), once per session."""
    from tpt.run import execute

    config = demo_config.with_output_dir(str(tmp_path_factory.mktemp("demo-run")))
    return config, execute(config, workers=2)


def outcome(out: Path) -> dict:
    """What a run decided: the ids written, and each duplicate set aside with its kept copy and kind."""
    import pyarrow.parquet as pq

    from tpt.io.output import OutputLayout, read_rejects

    layout = OutputLayout(out)
    rejects = read_rejects(layout)
    return {
        "written": sorted(pq.read_table(out / "manifest.parquet", columns=["id"]).column("id").to_pylist()),
        "duplicates": sorted((r["id"], r["duplicate_of"], r["reason"]) for r in rejects if r["stage"] == "deduplicate"),
    }


def stage_report(stage, out: Path | str) -> dict:
    """A stage's figures for summary.json on the run written to `out`, as finalize asks for them."""
    from tpt.io.output import OutputLayout, RejectCounts

    layout = OutputLayout(out)
    return stage.report(layout, RejectCounts.read(layout))


@pytest.fixture(scope="session")
def planted_run(tmp_path_factory) -> tuple[PipelineConfig, dict, dict]:
    """The corpus of planted duplicates (tests/corpora.py `planted_config`) through Beam (2 worker processes), once per session:
    its config, summary and `outcome`, the copies kept that every engine, task count and rerun must keep."""
    from tests.corpora import planted_config
    from tpt.run import execute

    folder = tmp_path_factory.mktemp("planted")
    config = planted_config(folder).with_output_dir(str(folder / "beam"))
    return config, execute(config, workers=2), outcome(folder / "beam")


@pytest.fixture(scope="session")
def teacher():
    """A simulated OpenAI-compatible teacher (tests/simulator.py): thinking in milliseconds, the same text
    for the same request, so two runs can be compared sample by sample."""
    from tests.simulator import SimulatedServer

    with SimulatedServer(slots=8, rate=4000, mean_tokens=50) as server:
        yield server


@pytest.fixture(scope="session")
def full_run(demo_config, teacher, tmp_path_factory) -> tuple[PipelineConfig, dict]:
    """The demo plus a source of bad lines (so there are rejects to compare), with thinking from the simulated
    teacher, through the Beam pipeline (2 worker processes), once per session."""
    from tests.test_pipeline_beam import BAD_LINES
    from tpt.config import GenerateConfig, SourceConfig
    from tpt.run import execute

    folder = tmp_path_factory.mktemp("full-run")
    good = {"id": "mixed-ok", "text": "A good line among bad ones: it is kept."}
    write_jsonl(folder / "mixed.jsonl", [good, *BAD_LINES, {"id": "mixed-ok", "text": "the same id again"}])
    config = demo_config.model_copy(update={
        "sources": [*demo_config.sources, SourceConfig(name="mixed", path=str(folder / "mixed.jsonl"))],
        "generate": GenerateConfig(backend="openai", model="teacher", base_urls=[teacher.url], temperature=0.0, max_new_tokens=64),
    }).with_output_dir(str(folder / "out"))
    return config, execute(config, workers=2)


@pytest.fixture(scope="session")
def short_budget_run(full_run, tmp_path_factory) -> tuple[PipelineConfig, dict]:
    """full_run's corpus and teacher again with a quarter of its thinking budget (16 tokens), one worker: a second
    run of the same documents, to compare with the first."""
    from tpt.run import execute

    config = full_run[0]
    config = config.model_copy(update={"generate": config.generate.model_copy(update={"max_new_tokens": 16})})
    config = config.with_output_dir(str(tmp_path_factory.mktemp("short-budget-run") / "out"))
    return config, execute(config, workers=1)


@pytest.fixture(scope="session")
def local_datatrove_run(full_run, tmp_path_factory) -> PipelineConfig:
    """The full run's config on datatrove's local executor, two tasks (2 workers), once per session: what a run on the
    Ray and Slurm executors, two tasks each, must write as well."""
    from tpt.run import execute

    config = full_run[0].with_output_dir(str(tmp_path_factory.mktemp("datatrove-local")))
    execute(config, "datatrove", tasks=2, workers=2)
    return config


SLURM_CLUSTER = str(ROOT / "scripts" / "slurm-cluster.sh")


@contextlib.contextmanager
def running_slurm_cluster() -> Iterator[float]:
    """The two-node cluster of scripts/slurm-cluster.sh, with SLURM_CONF set for sbatch, squeue and scancel (and the
    jobs: sbatch exports it): the one up already, else one started now and stopped at the end. Yields the seconds
    starting it took (0 if it was up); RuntimeError, saying why, if it cannot start."""
    import subprocess

    was_up = subprocess.run([SLURM_CLUSTER, "status"], capture_output=True).returncode == 0
    clock = time.perf_counter()
    started = subprocess.run([SLURM_CLUSTER, "start"], capture_output=True, text=True)
    if started.returncode != 0:
        raise RuntimeError(f"scripts/slurm-cluster.sh start failed: {started.stderr.strip()[-800:]}")
    took = 0.0 if was_up else time.perf_counter() - clock
    conf = subprocess.run([SLURM_CLUSTER, "env"], capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield took
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF")
        else:
            os.environ["SLURM_CONF"] = previous
        if not was_up:
            subprocess.run([SLURM_CLUSTER, "stop"], check=True, capture_output=True)


@pytest.fixture(scope="session")
def slurm_cluster():
    """The live two-node cluster (`running_slurm_cluster`), once per session. Without Slurm a test that needs it is
    skipped, saying why; in CI (CI=true) it errors instead."""
    import shutil

    def unavailable(why: str):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI runs the Slurm tests: {why}", pytrace=False)
        pytest.skip(why)

    if not shutil.which("slurmctld") or not shutil.which("sbatch"):
        unavailable("Slurm is not installed: `scripts/slurm-cluster.sh start` installs slurm-wlm and munge and starts a cluster")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(running_slurm_cluster())
        except RuntimeError as error:
            unavailable(str(error))
        yield SLURM_CLUSTER


@pytest.fixture(scope="session")
def transformers_server():
    """`transformers serve` on loopback serving the embedded teacher, once per session; yields its /v1 URL."""
    from tests.teacher_server import start_server

    process, url = start_server()
    yield url
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _read_data_keeping_trailing_bytes(read_data):
    """The emulator's request-body reader, mended for multipart uploads (gcsfs's for files under 5 MB).

    gcsfs ends a file's part with a bare "\n" before the closing boundary; the emulator's MIME parser takes a
    file's own last "\r" with it as a CRLF, so a file ending in "\r" (a compressed shard, one in 256) was stored
    one byte short. Each part here loses exactly the line break that precedes the next boundary.
    """
    def read(handler, query):
        content_type = handler.headers.get("Content-Type") or ""
        if not content_type.startswith("multipart/related"):
            return read_data(handler, query)
        from gcp_storage_emulator.server import _decode_raw_data, _read_raw_data

        raw = _decode_raw_data(_read_raw_data(handler), handler)
        delimiter = b"--" + content_type.split("boundary=", 1)[1].strip('"').encode()
        newline = b"\r\n" if raw[len(delimiter):].startswith(b"\r\n") else b"\n"
        meta, content = (part[len(newline):-len(newline)] for part in raw.split(delimiter)[1:3])
        (meta_head, meta_body), (head, body) = (part.split(newline * 2, 1) for part in (meta, content))
        content_type = next(line.split(b":", 1)[1].strip().decode() for line in head.split(newline)
                            if line.lower().startswith(b"content-type:"))
        return {"meta": json.loads(meta_body), "content": body, "content-type": content_type}
    return read


def think_all(stage, records: list) -> list:
    """Records through a think stage as an engine streams them: set up, one stream, finished; the samples in the
    records' order (a document's samples id#k in turn)."""
    from tpt.progress import Progress

    stage.setup()
    stream = stage.stream(Progress(stage.name))
    out = [item for record in records for item in stream.push(record)]
    out += stream.finish()
    order = {record.id: number for number, record in enumerate(records)}

    def position(item) -> tuple[int, int]:
        document, _, sample = item.id.rpartition("#")
        return (order[item.id], 0) if item.id in order else (order[document], int(sample))

    return sorted(out, key=position)


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    """A JSONL file of `rows`; a str row is written as the raw line (for malformed input)."""
    with open(path, "w", encoding="utf-8") as stream:
        for row in rows:
            stream.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


@pytest.fixture(scope="session", autouse=True)
def gcs_bucket() -> str:
    """gs://tpt-test on a local Cloud Storage server (the gcp-storage-emulator package), reached through gcsfs.

    It starts with the session (in milliseconds), before any worker process or datatrove's fork
    server, and its address goes through the environment, so every one of them reaches it.
    """
    import logging

    import gcp_storage_emulator as emulator
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)  # it logs every lookup of a missing object
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    emulator.server._read_data = _read_data_keeping_trailing_bytes(emulator.server._read_data)
    server = create_server("localhost", port, in_memory=True, default_bucket="tpt-test")
    server.start()
    # Its HTTP server listens with a backlog of 5, but gcsfs opens dozens of connections at once: the kernel
    # would drop the rest of them half-open, and a client then waits minutes on a connection nobody serves.
    server._api._httpd.socket.listen(1024)
    settings = {"STORAGE_EMULATOR_HOST": f"http://localhost:{port}", "FSSPEC_GCS_TOKEN": "anon"}
    previous = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    yield "gs://tpt-test"
    server.stop()
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name)
        else:
            os.environ[name] = value
