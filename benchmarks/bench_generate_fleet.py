"""How busy `tpt run` keeps a fleet of continuous-batching servers, against an ideal client; and what one core of tpt takes in.

    python -m benchmarks.bench_generate_fleet [--docs 770] [--slots 64] [--rate 250] [--cases beam-1x1,datatrove-2x2]

No GPU runs here, so the servers are simulated (tests/simulator.py): each
has `--slots` decode slots, decodes `--rate` tokens/s per sequence, and draws
each request's output length (lognormal, mean 1,500, capped at 8,192) from its
prompt and seed, so every client gets the same lengths for the same documents.

Part 1, the fleet. A case ENGINE-WxS runs `tpt run --engine ENGINE --workers W`
against S fresh servers (S processes, all in the config's base_urls) and reads
back the mean of busy slots over the busy period, summed over the servers.
Next to it, on fresh servers and the same documents, once per S: the ideal
client (one asyncio loop keeping 256 requests in flight, refilled the moment
each finishes, round-robin over the servers, sending exactly the chat messages
and seeds tpt sends), and datatrove 0.9's own InferenceRunner (its "endpoint"
server type, its default window of 500 requests, one task per server on a
LocalPipelineExecutor). The default is the fair workload: the 385 demo
documents twice (770), truncated to 2,048 tokens, 64 slots of 250 tokens/s per
server, and a config that leaves every other generate key at its default.

Part 2, the client's own cost: output tokens/s that tpt's think stage takes in
on one core from a server that answers at once, against the bare ideal client
that only reads the JSON (target: >= 50k tokens/s for tpt).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import aiohttp
import yaml

from tests.corpora import demo_texts
from tests.simulator import SimulatedServer
from tpt.config import GenerateConfig
from tpt.generate.backends.openai import request_body
from tpt.generate.prompts import PromptBuilder, load_template
from tpt.generate.store import read_entries
from tpt.generate.types import Request, request_seed
from tpt.progress import Progress
from tpt.schema import Record
from tpt.stages.think import Think
from tpt.stages.truncate import Truncate

ROOT = Path(__file__).resolve().parents[1]
MODEL = "teacher"  # the served model name
MAX_DOC_TOKENS = 2048
MAX_NEW_TOKENS = 8192
WINDOW = 256  # the ideal client's requests in flight (tpt's default max_in_flight)
GENERATE = {"backend": "openai", "model": MODEL, "max_new_tokens": MAX_NEW_TOKENS, "stop": ["</think>"]}  # every other key: its default
SETTINGS = GenerateConfig(**GENERATE)
ALL_CASES = [f"{engine}-{workers}x{servers}" for engine in ("beam", "datatrove") for servers in (1, 2) for workers in (1, 2)]


@dataclasses.dataclass(frozen=True)
class Workload:
    slots: int
    rate: float
    mean_tokens: float

    def servers(self, count: int, **overrides) -> list[SimulatedServer]:
        return [SimulatedServer(**{"slots": self.slots, "rate": self.rate, "mean_tokens": self.mean_tokens, "model": MODEL, **overrides})
                for _ in range(count)]


@dataclasses.dataclass
class Measure:
    busy_slots: float  # mean busy decode slots over the fleet's busy period, summed over its servers
    busy_period: float  # first arrival at any server to last completion at any
    tokens: int
    requests: int
    wall: float  # the client's wall time, start-up included


def documents(count: int) -> list[Record]:
    """`count` demo documents with distinct ids, going round the demo corpus (770: the corpus twice)."""
    texts = demo_texts()
    return [Record(f"doc-{i:05d}", "fleet", texts[i % len(texts)]) for i in range(count)]


def write_corpus(path: Path, records: list[Record]) -> Path:
    with open(path, "w", encoding="utf-8") as stream:
        stream.writelines(json.dumps({"id": r.id, "text": r.text}) + "\n" for r in records)
    return path


def truncated(records: list[Record]) -> list[Record]:
    """The documents as the think stage gets them from `tpt run`'s truncate stage."""
    truncate = Truncate("embedded", MAX_DOC_TOKENS)
    truncate.setup()
    return truncate.process(records)


def think_requests(kept: list[Record]) -> list[Request]:
    """The chat requests tpt's think stage makes of truncated records (the default prompt; the teacher is a chat model)."""
    builder = PromptBuilder(load_template(SETTINGS.prompt), chat=True)
    return [builder.request(r.id, r.text) for r in kept]


# the clients ---------------------------------------------------------------------------------------------------------


async def keep_window(urls: list[str], bodies: list[dict], window: int) -> int:
    """Keep `window` requests in flight, round-robin over `urls`, refilling each the moment one finishes; output tokens."""
    pending = iter(enumerate(bodies))  # shared by the lanes: a finished lane takes the next body at once

    async def lane(session: aiohttp.ClientSession) -> int:
        tokens = 0
        for number, body in pending:
            async with session.post(f"{urls[number % len(urls)]}/chat/completions", json=body) as response:
                response.raise_for_status()
                tokens += (await response.json())["usage"]["completion_tokens"]
        return tokens

    connector = aiohttp.TCPConnector(limit=window)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        return sum(await asyncio.gather(*(lane(session) for _ in range(window))))


def ideal_client(bodies: list[dict], urls: list[str]) -> None:
    asyncio.run(keep_window(urls, bodies, WINDOW))


def tpt_run(corpus: Path, work: Path, engine: str, workers: int, urls: list[str]) -> None:
    """`tpt run` as a user starts it, on a config that names the servers; its log goes to WORK/run.log."""
    work.mkdir()
    config = {"sources": [{"name": "fleet", "path": str(corpus)}], "truncate": {"max_doc_tokens": MAX_DOC_TOKENS},
              "generate": {**GENERATE, "openai": {"base_urls": urls}}}
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    command = [sys.executable, "-m", "tpt.cli", "run", str(work / "config.yaml"), "--output", str(work / "out"), "--workers", str(workers),
               *(["--engine", "datatrove"] if engine == "datatrove" else [])]
    # this tree's tpt, in every worker
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(work / "run.log", "w") as log:
        if subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode:
            raise RuntimeError(f"tpt run failed: {shlex.join(command)}\n{(work / 'run.log').read_text()[-3000:]}")


def datatrove_missing() -> str | None:
    """Why datatrove's InferenceRunner cannot run here, or None: it imports packages tpt does not pin."""
    missing = [name for name in ("orjson", "httpx") if importlib.util.find_spec(name) is None]
    if missing:
        return f"needs {' and '.join(missing)}, which tpt does not pin (pip install {' '.join(missing)})"
    return None


async def rollout(document, generate):
    """datatrove's rollout: one request, the prompt and seed tpt sends for this document."""
    return await generate({"messages": [{"role": "user", "content": document.text}], "seed": document.metadata["seed"]})


def shard(documents: list, data, rank: int, world_size: int) -> list:
    return documents[rank::world_size]


def datatrove_runner(requests: list[Request], work: Path, urls: list[str]) -> None:
    """datatrove's InferenceRunner as shipped, one task per server (datatrove gives each task its own server)."""
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
    from datatrove.pipeline.inference.servers import EndpointServer
    from datatrove.pipeline.writers import JsonlWriter

    class RunnerOnTaskEndpoint(InferenceRunner):
        """Task r talks to urls[r]: the stock runner has one endpoint_url for all tasks."""

        def _init_server(self, rank: int):
            return EndpointServer(dataclasses.replace(self.config, endpoint_url=urls[rank].removesuffix("/v1")), rank)

    c = SETTINGS
    docs = [Document(text=r.messages[0]["content"], id=r.id, metadata={"seed": request_seed(c.seed, r.id)}) for r in requests]
    inference = InferenceConfig(server_type="endpoint", model_name_or_path=c.model, endpoint_url=urls[0].removesuffix("/v1"), use_chat=True,
                                default_generation_params={"max_tokens": c.max_new_tokens, "temperature": c.temperature,
                                                           "top_p": c.top_p, "stop": list(c.stop)})
    runner = RunnerOnTaskEndpoint(rollout_fn=rollout, config=inference, output_writer=JsonlWriter(str(work / "out")))
    executor = LocalPipelineExecutor([partial(shard, docs), runner], tasks=len(urls), workers=len(urls), logging_dir=str(work / "logs"))
    with output_to(work / "run.log"):  # datatrove logs every task to stderr
        executor.run()


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """stdout and stderr of this process and its children into `path` for the block."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


# the fleet ----------------------------------------------------------------------------------------------------------


def measure(workload: Workload, servers: int, client: Callable[[list[str]], None]) -> Measure:
    """`client(urls)` against `servers` fresh simulated servers, and how busy it kept them."""
    with contextlib.ExitStack() as stack:
        fleet = [stack.enter_context(server) for server in workload.servers(servers)]
        started = time.perf_counter()
        client([server.url for server in fleet])
        wall = time.perf_counter() - started
        stats = [server.stats() for server in fleet]
    used = [s for s in stats if s["requests"]]
    period = max(s["last_end"] for s in used) - min(s["first_arrival"] for s in used)
    return Measure(sum(s["slot_seconds"] for s in used) / period, period, sum(s["output_tokens"] for s in stats),
                   sum(s["requests"] for s in stats), wall)


def parse_case(case: str) -> tuple[str, int, int]:
    """"datatrove-2x1" -> ("datatrove", 2 workers, 1 server)."""
    engine, _, size = case.partition("-")
    workers, servers = size.split("x")
    if engine not in ("beam", "datatrove"):
        raise ValueError(f"case {case!r}: the engine is beam or datatrove")
    return engine, int(workers), int(servers)


def run_fleet(workload: Workload, records: list[Record], cases: list[str], tmp: Path) -> None:
    corpus = write_corpus(tmp / "corpus.jsonl", records)
    requests = think_requests(truncated(records))
    bodies = [request_body(SETTINGS, request) for request in requests]
    why_not = datatrove_missing()
    ideal: dict[int, Measure] = {}
    runner: dict[int, Measure] = {}
    print(f"{'case':<16}{'tpt slots':>10}{'ideal':>8}{'tpt/ideal':>11}{'dt runner':>11}{'tpt wall s':>12}{'busy s tpt/ideal':>18}")
    for case in cases:
        engine, workers, servers = parse_case(case)
        if servers not in ideal:
            ideal[servers] = measure(workload, servers, partial(ideal_client, bodies))
            if why_not is None:
                work = Path(tempfile.mkdtemp(dir=tmp, prefix=f"datatrove-runner-{servers}-"))
                runner[servers] = measure(workload, servers, partial(datatrove_runner, requests, work))
        ours = measure(workload, servers, partial(tpt_run, corpus, tmp / case, engine, workers))
        best = ideal[servers]
        if ours.tokens != best.tokens:
            print(f"  note: {case}: tpt asked for {ours.tokens:,} output tokens in {ours.requests} requests, "
                  f"the ideal client {best.tokens:,} in {best.requests}: not the same requests")
        dt = f"{runner[servers].busy_slots:.1f}" if servers in runner else "n/a"
        print(f"{case:<16}{ours.busy_slots:10.1f}{best.busy_slots:8.1f}{ours.busy_slots / best.busy_slots:11.2f}{dt:>11}"
              f"{ours.wall:12.1f}{ours.busy_period:10.1f}/{best.busy_period:.1f}", flush=True)
    print(f"slots: mean busy decode slots over the busy period, summed over the servers ({workload.slots} each); "
          f"{len(records)} documents, {workload.rate:g} tokens/s per sequence, mean {workload.mean_tokens:g} tokens")
    print("dt runner: datatrove 0.9's InferenceRunner (endpoint server, its default window of 500), one task per server, "
          + (f"not measured: it {why_not}" if why_not else "same documents, fresh servers"))


# the client's own cost ------------------------------------------------------------------------------------------------


def think_all(stage: Think, records: list[Record]) -> None:
    """Every record through the think stage's stream, as an engine feeds it."""
    stream = stage.stream(Progress("think"))
    for record in records:
        stream.push(record)
    for _ in stream.finish():
        pass


def stage_rate(url: str, records: list[Record]) -> tuple[int, float, float]:
    """(output tokens, wall seconds, CPU seconds of this process's threads) of tpt's think stage over `records`, set-up excluded."""
    with tempfile.TemporaryDirectory() as out:
        stage = Think(GenerateConfig(**GENERATE, openai={"base_urls": [url]}), "embedded", out)
        stage.setup()
        started, cpu = time.perf_counter(), time.process_time()
        think_all(stage, records)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        stage.close()
        tokens = sum(entry["output_tokens"] for _, entry in read_entries(Path(out) / "thinking") if "raw" in entry)
    return tokens, seconds, cpu


def run_client_cost(workload: Workload, records: list[Record]) -> None:
    kept = truncated(records)
    bodies = [request_body(SETTINGS, request) for request in think_requests(kept)]
    with workload.servers(1, instant=True)[0] as server:
        started = time.perf_counter()
        bare_tokens = asyncio.run(keep_window([server.url], bodies, WINDOW))
        bare = bare_tokens / (time.perf_counter() - started)
        tokens, seconds, cpu = stage_rate(server.url, kept)
    ours, per_core = tokens / seconds, tokens / cpu  # per CPU second: what one core takes in, whatever else runs
    print(f"client cost, a server that answers at once, {len(records)} requests of mean {workload.mean_tokens:g} tokens:")
    print(f"  bare asyncio client: {bare:10,.0f} output tokens/s ({bare_tokens:,} tokens)")
    print(f"  tpt think stage:     {ours:10,.0f} output tokens/s ({tokens:,} tokens in {seconds:.1f} s), "
          f"{per_core:,.0f} per CPU second ({cpu:.1f} s)")
    print(f"  ratio tpt/bare: {ours / bare:.3f}; target for tpt: 50,000 tokens/s per core ({per_core / 50_000:.2f} of it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=770, help="documents (going round the 385 demo documents)")
    parser.add_argument("--slots", type=int, default=64, help="decode slots per server (vLLM's max_num_seqs)")
    parser.add_argument("--rate", type=float, default=250.0, help="output tokens/s per sequence")
    parser.add_argument("--mean-tokens", type=float, default=1500, help="mean output length (lognormal, sigma 1)")
    parser.add_argument("--cases", default=",".join(ALL_CASES), help="ENGINE-WORKERSxSERVERS, comma-separated; empty: none")
    parser.add_argument("--client-cost", action=argparse.BooleanOptionalAction, default=True, help="part 2, the client's own cost")
    args = parser.parse_args()
    from loguru import logger  # datatrove's task logs: the output is the figures

    logger.remove()
    cases = [case for case in args.cases.split(",") if case]
    for case in cases:
        parse_case(case)
    workload = Workload(args.slots, args.rate, args.mean_tokens)
    records = documents(args.docs)
    with tempfile.TemporaryDirectory() as tmp:
        if cases:
            run_fleet(workload, records, cases, Path(tmp))
        if args.client_cost:
            run_client_cost(workload, records)
    print("reproduce:", shlex.join(["python", *sys.argv]))


if __name__ == "__main__":
    main()
