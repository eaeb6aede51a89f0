"""A soak of exactly-once generation: SIGKILL `tpt run` at many random moments, rerun after each, and prove no
request was lost or generated twice.

The think stage's promise (docs/thinking.md, "Exactly once, resumable") is that a SIGKILL at any moment loses
only the requests in flight, and a rerun generates only what the store lacks. A few hand-picked kill points
(tests/test_think_resume.py) cannot cover start-up, every phase of generation, the drain and the finalize on
both engines, so this script kills the whole process group (driver and workers) at `--kills` random moments
drawn from `--seed` (printed, so a failure can be replayed), reruns after each, runs to the end, and checks:

- every request id `doc#k` is in the shards exactly once (read back through StreamingDataset);
- the thinking store holds each finished `doc#k` exactly once;
- the servers' answers account for every request: a run that finishes asked exactly as many as it added to
  the store (so nothing stored was asked again), a killed one at most one window per worker more (its requests
  in flight, answered but lost with the client);
- no rejects (the corpus is clean).

Every run talks to a fresh simulated server (tests/simulator.py), so the server's request count is that
run's alone. The server keeps one port for the whole soak, so every run has the same config: a rerun of the
same command, which a datatrove run resumes from its completion markers rather than starting over.

    python -m benchmarks.soak --engine beam|datatrove|mixed [--seed N] [--kills 20] [--docs 100] [--keep]

Prints one line per run, then `soak: 20 kills (beam), 0 lost, 0 duplicated, N re-asked after kills, shards read
back: M samples`; exit code 0 if every check holds, 1 (naming the offending ids and the run logs) if not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.corpora import demo_texts
from tests.simulator import SimulatedServer

ROOT = Path(__file__).resolve().parents[1]

SAMPLES = 2  # generate.samples_per_document: request ids doc#0, doc#1
WORKERS = 2
MAX_IN_FLIGHT = 16  # per worker process: a killed run loses at most WORKERS windows of requests
MAX_NEW_TOKENS = 1000
DOC_CHARS = 500
SERVER = {"slots": 8, "rate": 2000, "mean_tokens": 200}  # a full run's generation takes seconds
TASKS = (1, 2, 3)  # datatrove --tasks drawn in mixed mode
RUN_TIMEOUT = 300.0  # a run that neither finishes nor reaches its kill moment by then hangs
POLL = 0.1  # seconds between looks at a running run
QUIET = MAX_NEW_TOKENS / SERVER["rate"] + 0.5  # a request in a slot is answered within this; then the count is final
SETTLE_TIMEOUT = 30.0
FIRST_HORIZON = 30.0  # kill-by-time range (seconds) before a run of the engine has finished
RUNS_PER_KILL = 3  # at most this many runs per kill asked for (runs finishing before their moment count as runs)


@dataclass
class Trigger:
    """When to kill a run: `fires(seconds since start, finished results stored, seconds since the store was full)`."""

    label: str
    fires: Callable[[float, int, float | None], bool]


@dataclass
class Run:
    number: int
    engine: str
    tasks: int | None
    trigger: str
    outcome: str = ""  # killed | finished | failed | hung
    seconds: float = 0.0
    stored_before: int = 0
    stored_after: int = 0
    asked: int = 0  # requests the server answered for this run
    kill: int = 0  # which kill this run was, if killed
    started: float = 0.0  # wall clock
    log: Path = Path()

    @property
    def new(self) -> int:
        return self.stored_after - self.stored_before

    @property
    def lost(self) -> int:
        """Requests answered but not stored: in flight at the kill."""
        return self.asked - self.new

    def describe(self) -> str:
        tasks = f" --tasks {self.tasks}" if self.tasks else ""
        head = f"run {self.number:>2} {self.engine}{tasks}"
        counts = f"asked {self.asked}, stored {self.new} new ({self.stored_after} in all), lost in flight {self.lost}"
        if self.outcome == "killed":
            moment = f"killed at {self.seconds:.1f} s with {self.stored_after} results stored [{self.trigger}]"
            return f"kill {self.kill:>2}: {head} {moment}; {counts}"
        if self.outcome == "finished" and self.trigger == "no kill":
            return f"{head}: finished in {self.seconds:.1f} s (run to the end); {counts}"
        if self.outcome == "finished":
            return f"{head}: finished in {self.seconds:.1f} s, before its kill moment [{self.trigger}]; {counts}"
        return f"{head}: {self.outcome} after {self.seconds:.1f} s [{self.trigger}]; {counts}; log {self.log}"


@dataclass
class Soak:
    folder: Path
    engine: str
    rng: random.Random
    ids: list[str]  # every request id, doc#k
    port: int
    runs: list[Run] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    planned: int = 20  # kills to land
    recent: dict[str, float] = field(default_factory=dict)  # per engine: how long its last finished run took

    @property
    def out(self) -> Path:
        return self.folder / "out"

    @property
    def config(self) -> Path:
        return self.folder / "config.yaml"

    @property
    def kills(self) -> int:
        return sum(r.outcome == "killed" for r in self.runs)


def write_corpus(folder: Path, docs: int) -> list[str]:
    """`docs` demo documents (their first DOC_CHARS characters, spread over every demo file) as docs.jsonl;
    returns the request ids the run must generate."""
    texts = demo_texts()
    if docs > len(texts):
        raise ValueError(f"--docs {docs}: the demo corpus has {len(texts)} documents")
    step = len(texts) // docs
    names = [f"doc{n:03d}" for n in range(docs)]
    with open(folder / "docs.jsonl", "w", encoding="utf-8") as stream:
        for name, text in zip(names, texts[::step]):
            stream.write(json.dumps({"id": name, "text": text[:DOC_CHARS]}) + "\n")
    return [f"{name}#{k}" for name in names for k in range(SAMPLES)]


def write_config(soak: Soak) -> None:
    url = f"http://127.0.0.1:{soak.port}/v1"
    soak.config.write_text(
        "sources: [{name: web, path: docs.jsonl}]\ntruncate: {max_doc_tokens: 64}\noutput: {parts: 2}\n"
        f"generate: {{backend: openai, model: teacher, openai: {{base_urls: [{url}]}}, chat: true, samples_per_document: {SAMPLES}, "
        f"max_new_tokens: {MAX_NEW_TOKENS}, max_in_flight: {MAX_IN_FLIGHT}, store: {{flush_every_docs: 1}}}}\n")


def free_port(rng: random.Random) -> int:
    """A free port below the usual ephemeral range, so client connections are unlikely to take it between runs."""
    for _ in range(100):
        port = rng.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000 on 127.0.0.1")


def start_server(soak: Soak) -> SimulatedServer:
    """A fresh simulated server on the soak's port (a new port, and config, only if another process took it)."""
    for _ in range(3):
        server = SimulatedServer(**SERVER)
        server.command += ["--port", str(soak.port)]
        try:
            return server.__enter__()
        except RuntimeError as error:
            soak.port = free_port(random.Random())
            write_config(soak)
            print(f"  (the simulator could not start on its port: {error}; moved to port {soak.port})", flush=True)
    raise RuntimeError("the simulated server would not start")


def stored(out: Path) -> Counter:
    """Finished results in the thinking store, per request id."""
    from tpt.generate.store import read_entries

    if not (out / "thinking").is_dir():
        return Counter()
    return Counter(entry["id"] for _, entry in read_entries(out / "thinking") if "raw" in entry)


def failures_stored(out: Path) -> int:
    """Lines of the store that record a failed request (the next run tries it again)."""
    from tpt.generate.store import read_entries

    if not (out / "thinking").is_dir():
        return 0
    return sum("id" in entry and "raw" not in entry for _, entry in read_entries(out / "thinking"))


def draw_trigger(soak: Soak, engine: str, have: int) -> Trigger:
    """Most kills land mid-generation, a few more results into the store each time, spread so that the store
    fills over about the first three quarters of the kills; some of them at a random time instead (start-up
    included), when that comes first; a run that may fill the store is killed in its drain, write or
    finalize; once the store is full, kills land at a random time over a whole run."""
    left = len(soak.ids) - have
    horizon = 1.2 * soak.recent.get(engine, FIRST_HORIZON)
    if left == 0:
        moment = soak.rng.uniform(0.5, horizon)
        return Trigger(f"at {moment:.1f} s", lambda seconds, _c, _f: seconds >= moment)
    kills_left = soak.planned - soak.kills - soak.planned // 4
    step = max(1, math.ceil(2 * left / max(1, kills_left)))
    if step >= left and soak.rng.random() < 0.5:
        extra = soak.rng.uniform(0.0, 4.0)
        return Trigger(f"{extra:.1f} s after the store is full", lambda _s, _c, full: full is not None and full >= extra)
    target = have + soak.rng.randint(1, min(step, left))
    if soak.rng.random() < 0.3:
        moment = soak.rng.uniform(0.5, horizon)
        return Trigger(f"at {moment:.1f} s or {target} stored, whichever first",
                       lambda seconds, count, _f: seconds >= moment or count >= target)
    return Trigger(f"at {target} stored", lambda _s, count, _f: count >= target)


def draw_engine(soak: Soak) -> tuple[str, int | None]:
    engine = soak.engine if soak.engine != "mixed" else soak.rng.choice(["beam", "datatrove"])
    tasks = soak.rng.choice(TASKS) if engine == "datatrove" and soak.engine == "mixed" else None
    return engine, tasks


def group_alive(group: int) -> bool:
    """Whether any process of the group is still running (zombies waiting to be reaped are not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[2]) == group:
            return True
    return False


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the run's process group and wait until none of it runs, so no killed worker writes any more."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 30
    while group_alive(process.pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"process group {process.pid} survived SIGKILL for 30 s")
        time.sleep(POLL)


def watch(process: subprocess.Popen, trigger: Trigger | None, out: Path, total: int) -> tuple[str, float]:
    """Follow a run until it exits or its trigger fires (then SIGKILL it); returns (outcome, seconds)."""
    started = time.monotonic()
    full_since = None
    while True:
        seconds = time.monotonic() - started
        if process.poll() is not None:
            kill_group(process)  # a worker the driver left behind must not write into the next run
            return ("finished" if process.returncode == 0 else "failed"), seconds
        if seconds > RUN_TIMEOUT:
            kill_group(process)
            return "hung", seconds
        if trigger is not None:
            count = len(stored(out))
            if count >= total and full_since is None:
                full_since = time.monotonic()
            if trigger.fires(seconds, count, None if full_since is None else time.monotonic() - full_since):
                kill_group(process)  # it may have exited just before: then its own exit code counts
                return {-signal.SIGKILL: "killed", 0: "finished"}.get(process.returncode, "failed"), seconds
        time.sleep(POLL)


def run_once(soak: Soak, kill: bool) -> Run:
    """One `tpt run` against a fresh server, killed at a drawn moment if `kill`; checks what it asked."""
    engine, tasks = draw_engine(soak)
    before = len(stored(soak.out))
    trigger = draw_trigger(soak, engine, before) if kill else None
    run = Run(len(soak.runs) + 1, engine, tasks, trigger.label if trigger else "no kill", stored_before=before,
              log=soak.folder / f"run-{len(soak.runs) + 1:02d}.log")
    command = [sys.executable, "-m", "tpt.cli", "run", str(soak.config), "--output", str(soak.out),
               "--workers", str(WORKERS), "--engine", engine, *(["--tasks", str(tasks)] if tasks else [])]
    server = start_server(soak)
    try:
        run.started = time.time()
        with open(run.log, "w") as log:
            process = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
            run.outcome, run.seconds = watch(process, trigger, soak.out, len(soak.ids))
        run.asked = server.settled_requests(longest=QUIET, timeout=SETTLE_TIMEOUT)
    finally:
        server.__exit__()
    run.stored_after = len(stored(soak.out))
    run.kill = soak.kills + 1 if run.outcome == "killed" else 0
    if run.outcome == "finished":
        soak.recent[engine] = run.seconds
    soak.runs.append(run)
    check_run(soak, run)
    return run


def check_run(soak: Soak, run: Run) -> None:
    """A finished run asked exactly what it stored, and stored every id; a killed one lost at most its windows."""
    window = WORKERS * MAX_IN_FLIGHT
    if run.outcome in ("failed", "hung"):
        soak.violations.append(f"run {run.number} {run.outcome} (log {run.log}):\n{tail(run.log)}")
    elif run.outcome == "finished" and (run.lost or run.stored_after != len(soak.ids)):
        soak.violations.append(f"run {run.number} finished but asked {run.asked} and stored {run.new} new "
                               f"({run.stored_after} of {len(soak.ids)} in all); log {run.log}")
    elif not 0 <= run.lost <= window:
        soak.violations.append(f"run {run.number} asked {run.asked} and stored {run.new} new: {run.lost} unaccounted "
                               f"for (at most {window} can be in flight at a kill); log {run.log}")
    if run.outcome == "finished":
        check_summary(soak, run)


def check_summary(soak: Soak, run: Run) -> None:
    """The finished run's own account agrees: generated what the server answered, resumed what the store held."""
    summary = soak.out / "summary.json"
    if summary.stat().st_mtime < run.started:
        return  # a datatrove rerun that found every task done keeps its earlier attempt's summary
    think = json.loads(summary.read_text())["stages"]["think"]
    if (think.get("requests_generated"), think.get("requests_resumed")) != (run.asked, run.stored_before):
        soak.violations.append(f"run {run.number}: summary.json says generated {think.get('requests_generated')}, "
                               f"resumed {think.get('requests_resumed')}; the server answered {run.asked} and the store "
                               f"held {run.stored_before}; log {run.log}")


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def shard_ids(out: Path) -> list[str]:
    """The `id` of every sample, through StreamingDataset over the streams of OUT/streams.yaml."""
    from streaming import Stream, StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    from tpt.train.streams import read_streams

    streams = read_streams(str(out / "streams.yaml"))
    clean_stale_shared_memory()
    dataset = StreamingDataset(streams=[Stream(**s) for s in streams.values()], shuffle=False, batch_size=1)
    return [dataset[i]["id"] for i in range(dataset.num_samples)]


def check_store(soak: Soak, finished: bool) -> set[str]:
    """The store holds no id twice, and once a run finished, every id; returns the ids it holds more than once."""
    expected, in_store = set(soak.ids), stored(soak.out)
    twice = {i for i, n in in_store.items() if n > 1}
    if twice:
        soak.violations.append(f"{len(twice)} ids stored more than once: "
                               + ", ".join(f"{i} ({in_store[i]} times)" for i in sorted(twice)))
    if finished and set(in_store) != expected:
        soak.violations.append(f"the store lacks {sorted(expected - set(in_store))} and holds "
                               f"{sorted(set(in_store) - expected)} that were never asked for")
    return twice


def check_shards(soak: Soak) -> tuple[set[str], set[str], int]:
    """Every id in the shards exactly once, and no rejects (the corpus is clean); returns (ids missing, ids more
    than once, samples read back)."""
    from tpt.io.output import OutputLayout, read_rejects

    expected = set(soak.ids)
    if not (soak.out / "streams.yaml").exists():
        soak.violations.append(f"the finished run left no streams.yaml; log {soak.runs[-1].log}")
        return expected, set(), 0
    in_shards = Counter(shard_ids(soak.out))
    lost, twice, extra = expected - set(in_shards), {i for i, n in in_shards.items() if n > 1}, set(in_shards) - expected
    if lost:
        soak.violations.append(f"{len(lost)} ids not in the shards: {', '.join(sorted(lost))}")
    if twice:
        soak.violations.append(f"{len(twice)} ids in the shards more than once: "
                               + ", ".join(f"{i} ({in_shards[i]} times)" for i in sorted(twice)))
    if extra:
        soak.violations.append(f"ids in the shards that were never asked for: {', '.join(sorted(extra))}")
    rejects = read_rejects(OutputLayout(str(soak.out)))
    if rejects:
        soak.violations.append(f"{len(rejects)} rejects: " + "; ".join(
            f"{r.get('stage')} {r.get('reason')} {r.get('id')}" for r in rejects[:20]))
    return lost, twice, sum(in_shards.values())


def soak_runs(soak: Soak) -> None:
    """Runs with a kill moment each until the planned kills landed (bounded), then one run to the end; stops at
    the first violation."""
    for _ in range(RUNS_PER_KILL * soak.planned):
        if soak.kills >= soak.planned or soak.violations:
            break
        print(run_once(soak, kill=True).describe(), flush=True)
    if soak.kills < soak.planned and not soak.violations:
        soak.violations.append(f"only {soak.kills} of {soak.planned} kills landed in {len(soak.runs)} runs")
    if not soak.violations:
        print(run_once(soak, kill=False).describe(), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["beam", "datatrove", "mixed"], default="beam",
                        help="mixed: engine and datatrove --tasks drawn anew for every run")
    parser.add_argument("--seed", type=int, help="draws the kill moments and engines (default: a random one, printed)")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--docs", type=int, default=100, help=f"documents, {SAMPLES} requests each")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (always kept when a check fails)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    folder = Path(tempfile.mkdtemp(prefix="tpt-soak-"))
    rng = random.Random(seed)
    soak = Soak(folder, args.engine, rng, write_corpus(folder, args.docs), free_port(random.Random()), planned=args.kills)
    write_config(soak)
    print(f"soak: seed {seed}, engine {args.engine}, {args.kills} kills, {args.docs} documents x {SAMPLES} samples, "
          f"work folder {folder}", flush=True)
    started = time.monotonic()
    soak_runs(soak)
    finished = bool(soak.runs) and soak.runs[-1].outcome == "finished"
    twice = check_store(soak, finished)
    if finished:
        lost, shards_twice, samples = check_shards(soak)
        shards = f"{len(lost)} lost, {len(twice | shards_twice)} duplicated"
    else:
        samples, shards = 0, f"shards not checked (stopped at run {len(soak.runs)}), {len(twice)} duplicated in the store"
    asked, failed = sum(r.asked for r in soak.runs), failures_stored(soak.out)
    print(f"soak: {len(soak.runs)} runs in {time.monotonic() - started:.0f} s; the servers answered {asked} requests "
          f"for {len(soak.ids)} ids" + (f"; {failed} failed requests in the store" if failed else ""))
    print(f"soak: {soak.kills} kills ({args.engine}), {shards}, {sum(r.lost for r in soak.runs)} re-asked after kills, "
          f"shards read back: {samples} samples")
    for violation in soak.violations:
        print(f"VIOLATION: {violation}")
    if soak.violations:
        print(f"soak: FAILED (seed {seed}); work folder and run logs kept in {folder}")
        return 1
    if not args.keep:
        shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
