"""Generate the thinking t of every document d: the training sample becomes [d; t].

A streaming stage: each worker keeps one window of `max_in_flight` requests in
flight, so a continuous-batching server always has the next request queued the
moment one finishes. Documents enter as soon as earlier stages release them,
samples leave as their requests finish, in any order, and the window drains
only at the end of a bundle or task. What a worker sets up for it is one
`Generation`: the backend, the sample rules (tpt.generate.samples) and its
answers, stored the moment they arrive and never asked twice
(tpt.generate.exactly_once, where the argument is), so any engine that runs the
stream gets exactly-once answers and resume after a kill for free.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tokenizers import Tokenizer

from tpt.assets import tokenizer_file
from tpt.config import GenerateConfig, NormalizeConfig
from tpt.generate.answers import stored_bytes
from tpt.generate.backend import Backend
from tpt.generate.backends import build_backend
from tpt.generate.cost import gpu_hours
from tpt.generate.exactly_once import Answers, Claim
from tpt.generate.prompts import PromptBuilder, has_chat_template, load_template
from tpt.generate.samples import REPAIRS, STAGE, Pending, SampleRules
from tpt.generate.store import Location, ThinkingStore, read_entries
from tpt.generate.window import Window
from tpt.io.output import OutputLayout, RejectCounts
from tpt.progress import Progress
from tpt.schema import Record, Reject
from tpt.stages.base import Stage, StageStream

STORE = "thinking"  # OUT/thinking/
SERVER_COUNTS = ("requests", "failed", "failed_attempts", "output_tokens")  # per server in summary.json
RESUMED_PER_READ = 256  # stored answers read back in one call (one ranged read each, concurrent on object stores)


class Think(Stage):
    name: ClassVar[str] = STAGE
    worker_state = ("_generation",)

    def __init__(self, config: GenerateConfig, tokenizer: str, output_dir: str | None,
                 same_text: NormalizeConfig | None = None):
        """`same_text`: exact deduplication's normalisation, under which a stored answer serves every copy of a text."""
        if not output_dir:
            raise ValueError("generate: the think stage keeps its results in OUT/thinking/: set output.dir or pass --output")
        self.config = config
        self.tokenizer = tokenizer  # the teacher's, for thinking_tokens and sample_tokens
        self.same_text = same_text
        self.store_dir = OutputLayout(output_dir).url_of(STORE)
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)  # names this run's store parts
        self._generation: Generation | None = None  # set up in each worker

    def check(self) -> None:
        """The prompt template exists, and the backend can answer (every server, for the openai backend)."""
        load_template(self.config.prompt)
        build_backend(self.config).check()

    def setup(self) -> None:
        if self._generation is None:
            self._generation = Generation.start(self.config, self.tokenizer, ThinkingStore(
                self.store_dir, self.run_id, self.config.store.flush_every_docs, self.config.store.flush_every_seconds),
                self.same_text)

    def stream(self, progress: Progress) -> ThinkStream:
        return ThinkStream(self._generation, self.config.max_in_flight, progress)

    def close(self) -> None:
        """Flush the store and release the backend."""
        if self._generation is not None:
            self._generation.close()
            self._generation = None

    def report(self, layout: OutputLayout, rejects: RejectCounts) -> dict[str, Any]:
        """This run's generation figures for summary.json, read back from its store parts."""
        return generation_report(self.store_dir, self.run_id, layout, rejects, self.config)


@dataclass
class Generation:
    """What a worker sets up to generate: the backend, the sample rules, and its answers (store and requests in flight)."""

    backend: Backend
    rules: SampleRules
    answers: Answers

    @classmethod
    def start(cls, config: GenerateConfig, tokenizer: str, store: ThinkingStore,
              same_text: NormalizeConfig | None = None) -> Generation:
        encoder = Tokenizer.from_file(str(tokenizer_file(tokenizer)))
        encoder.no_truncation()
        backend = build_backend(config)
        chat = config.chat if config.chat is not None else has_chat_template(backend.template_folder(tokenizer_file(tokenizer)))
        rules = SampleRules(config, encoder, PromptBuilder(load_template(config.prompt), chat), same_text)
        backend.setup()
        answers = Answers(store, stored_bytes(rules.budgets.longest))
        store.open(backend=config.backend, model=config.model)
        return cls(backend, rules, answers)

    def keep(self, pending: Pending, completion) -> dict[str, Any]:
        """A finished request's answer, stored (the window's `keep`, in the backend's thread)."""
        return self.answers.keep(pending, self.rules.entry(pending, completion))

    def close(self) -> None:
        self.answers.close()
        self.backend.close()


class ThinkStream(StageStream):
    """One window of requests in flight for a bundle or task; stored answers are read back, not sent."""

    def __init__(self, generation: Generation, window_size: int, progress: Progress):
        self.generation, self.progress = generation, progress
        self.window = Window(generation.backend, window_size, keep=generation.keep)
        self._resumed: list[tuple[Pending, Location]] = []

    def push(self, record: Record) -> list[Record | Reject]:
        todo = []
        for pending in self.generation.rules.requests(record):
            claim, location = self.generation.answers.claim(pending, self.window)
            if claim is Claim.SEND:
                todo.append((pending, pending.request))
            elif claim is Claim.STORED:
                self._resumed.append((pending, location))
        finished = self.window.finished()
        while todo and self.window.room <= 0:  # full: wait for a slot, handing on what finished meanwhile
            finished += self.window.finished(wait=True)
        self.window.submit(todo)  # the window is full again while the earlier stages prepare the next record
        out = self._read_resumed() if len(self._resumed) >= RESUMED_PER_READ else []
        return out + self._hand_on(finished)  # after the submit: a claimed request is always sent

    def finish(self) -> Iterator[Record | Reject]:
        yield from self._read_resumed()
        for finished in self.window.drain():
            yield from self._hand_on([finished])
        self.generation.answers.flush()  # the bundle's answers are durable, on a disk or an object store

    def _hand_on(self, finished: list[tuple[Pending, dict[str, Any]]]) -> list[Record | Reject]:
        """The samples of answers that arrived (each counted, with its tokens)."""
        for _, entry in finished:
            self.progress.update(1, entry.get("output_tokens", 0))
        return [sample for pending, entry in finished for sample in self.generation.rules.samples(pending, entry)]

    def _read_resumed(self) -> list[Record | Reject]:
        resumed, self._resumed = self._resumed, []
        if not resumed:
            return []
        entries = self.generation.answers.read([location for _, location in resumed])
        self.progress.update(len(resumed))
        return [sample for (pending, _), entry in zip(resumed, entries) for sample in self.generation.rules.samples(pending, entry)]


@dataclass
class Tally:
    """What a run's store entries add up to: requests, tokens, retries and repairs, in all and per server."""

    first_start: float = math.inf  # of any writer of the run
    last_end: float = -math.inf  # of any answer
    generated: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    retried: int = 0
    characters_replaced: int = 0
    repaired: Counter = field(default_factory=Counter)  # answers put right (tpt.generate.answers), by what was wrong
    writers: set[str] = field(default_factory=set)
    servers: defaultdict[str | None, Counter] = field(default_factory=lambda: defaultdict(Counter))

    @classmethod
    def of(cls, store_dir: str, run_id: str) -> Tally:
        tally = cls()
        for writer, entry in read_entries(store_dir, run_id):
            tally.add(writer, entry)
        return tally

    def add(self, writer: str, entry: dict[str, Any]) -> None:
        if "started" in entry:
            self.first_start = min(self.first_start, entry["started"])
            return
        self.writers.add(writer)
        self.last_end = max(self.last_end, entry["t"])
        self.retried += entry["retries"]
        server = self.servers[entry.get("server")]
        for url in entry.get("failed_at", ()):
            self.servers[url]["failed_attempts"] += 1
        if "error" in entry:
            self.failed += 1
            server["failed"] += 1
            return
        self.generated += 1
        self.input_tokens += entry["prompt_tokens"]
        self.output_tokens += entry["output_tokens"]
        server["requests"] += 1
        server["output_tokens"] += entry["output_tokens"]
        self.repaired.update(name for name in REPAIRS if entry.get(name))
        self.characters_replaced += entry.get("characters_replaced", 0)

    @property
    def seconds(self) -> float:
        return self.last_end - self.first_start if self.writers else 0.0


def generation_report(store_dir: str, run_id: str, layout: OutputLayout, rejects: RejectCounts,
                      config: GenerateConfig) -> dict[str, Any]:
    """Tokens, throughput, retries and failures of one run (in all and per server), and the device-hours the
    whole corpus would take at its rate."""
    tally = Tally.of(store_dir, run_id)
    seconds = tally.seconds
    rate = tally.output_tokens / seconds if seconds > 0 else None
    samples, reused = _samples_asked(layout, rejects)
    report: dict[str, Any] = {
        "backend": config.backend,
        "model": config.model,
        "requests_generated": tally.generated,
        "requests_resumed": max(samples - tally.generated - tally.failed, 0),
        "requests_retried": tally.retried,
        "requests_failed": tally.failed,
        "samples_reusing_thinking": reused,  # copies of a kept document, written with its thinking (dedup reuse)
        "input_tokens": tally.input_tokens,
        "output_tokens": tally.output_tokens,
        "generation_seconds": round(seconds, 3),
        "output_tokens_per_second": round(rate, 2) if rate else None,
        **{f"answers_{what}": tally.repaired[name] for name, what in REPAIRS.items()},
        "characters_replaced": tally.characters_replaced,
    }
    servers = tally.servers
    if servers.keys() - {None}:  # served over HTTP: each server's share
        report["servers"] = {url: {name: servers[url][name] for name in SERVER_COUNTS} | {
            "output_tokens_per_second": round(servers[url]["output_tokens"] / seconds, 2) if seconds > 0 else None}
            for url in sorted(filter(None, servers))}  # a request that failed before reaching a server names none
    if rate and tally.generated:
        # every sample of the corpus at this run's mean thinking length and throughput
        tokens, devices = samples * (tally.output_tokens / tally.generated), build_backend(config).devices(len(tally.writers))
        report["estimated_hours_whole_corpus"] = round(gpu_hours(tokens, rate), 4)
        report["estimated_gpu_hours_whole_corpus"] = round(gpu_hours(tokens, rate, devices), 4)
        report["devices_assumed"] = devices
    return report


def _samples_asked(layout: OutputLayout, rejects: RejectCounts) -> tuple[int, int]:
    """The samples the think stage asked for (those with thinking in the shards, and those it set aside), and the
    copies that took a kept document's thinking instead of asking."""
    import pyarrow.compute as pc  # here, not in every worker that imports the stage

    asked = reused = 0
    if layout.exists(layout.manifest):
        written = layout.read_parquet(layout.manifest, columns=["finish_reason", "duplicate_of"])
        thought, copy = pc.is_valid(written.column("finish_reason")), pc.is_valid(written.column("duplicate_of"))
        reused = pc.sum(pc.and_(thought, copy)).as_py() or 0
        asked = (pc.sum(thought).as_py() or 0) - reused
    copies = sum(rejects.copies[STAGE].values())  # set aside with their kept document's thinking
    set_aside = sum(rejects.by_stage().get(STAGE, {}).values())
    return asked + set_aside - copies, reused + copies
