"""Generate the thinking t of every document d: the training sample becomes [d; t].

A streaming stage: each worker keeps one window of `max_in_flight` requests in
flight, so a continuous-batching server always has the next request queued the
moment one finishes. Documents enter as soon as earlier stages release them,
samples leave as their requests finish, in any order, and the window drains
only at the end of a bundle or task. Each result is stored in OUT/thinking/ the
moment it arrives, before it is handed on, and a request whose result is stored
is never sent again: any engine that runs the stream gets exactly-once results
and resume after a kill for free.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

from tokenizers import Tokenizer

from tpt.assets import tokenizer_file
from tpt.config import GenerateConfig
from tpt.dedup import with_kept_fields
from tpt.generate import postprocess
from tpt.generate.answers import plausible_count, sanitise, stored_bytes
from tpt.generate.backends import build_backend
from tpt.generate.budgets import Budgets
from tpt.generate.prompts import PromptBuilder, has_chat_template, load_template
from tpt.generate.store import Location, ThinkingStore, read_entries
from tpt.generate.types import Completion, Request
from tpt.generate.window import Window
from tpt.io.output import OutputLayout, read_rejects
from tpt.progress import Progress
from tpt.schema import Record, Reject
from tpt.stages.base import Stage, StageStream

STORE = "thinking"  # OUT/thinking/
SERVER_COUNTS = ("requests", "failed", "failed_attempts", "output_tokens")  # per server in summary.json
REPAIRS = {"over_budget": "over_budget", "characters_replaced": "with_invalid_characters", "usage_invalid": "with_invalid_usage"}
RESUMED_PER_READ = 256  # stored results read back in one call (one ranged read each, concurrent on object stores)
SEND, FOLLOW = object(), object()  # what a stream does with a request whose result is not stored


class Think(Stage):
    name: ClassVar[str] = "think"

    def __init__(self, config: GenerateConfig, tokenizer: str, output_dir: str | None):
        if not output_dir:
            raise ValueError("generate: the think stage keeps its results in OUT/thinking/: set output.dir or pass --output")
        self.config = config
        self.tokenizer = tokenizer  # the teacher's, for thinking_tokens and sample_tokens
        self.store_dir = OutputLayout(output_dir).url_of(STORE)
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)  # names this run's store parts
        self._store: ThinkingStore | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Configuration only: what `setup` opened (a backend's thread and connections, locks) belongs to its process,
        and one local worker sets the stage up in the driver, which copies it for the next job."""
        return {**{name: self.__dict__[name] for name in ("config", "tokenizer", "store_dir", "run_id")}, "_store": None}

    def setup(self) -> None:
        if self._store is not None:
            return
        self._encoder = Tokenizer.from_file(str(tokenizer_file(self.tokenizer)))
        self._encoder.no_truncation()
        self._backend = build_backend(self.config)
        self._prompts = PromptBuilder(load_template(self.config.prompt), self._chat())
        self._budgets = Budgets(self.config)
        self._backend.setup()
        store = ThinkingStore(self.store_dir, self.run_id, self.config.store.flush_every_docs, self.config.store.flush_every_seconds)
        longest = max([self.config.max_new_tokens] + [rule.max_new_tokens or 0 for rule in self.config.budgets])
        self._stored = store.index(stored_bytes(longest))  # where each stored result is; the texts stay in the store
        self._in_flight: dict[str, list] = {}  # requests out, each with the streams that follow it
        self._lock = threading.Lock()  # streams of several threads share the stage (Beam)
        store.open(backend=self.config.backend, model=self.config.model)
        self._store = store

    def check(self) -> None:
        """The prompt template exists, and the backend can answer (every server, for the openai backend)."""
        load_template(self.config.prompt)
        build_backend(self.config).check()

    def stream(self, progress: Progress) -> ThinkStream:
        self.setup()
        return ThinkStream(self, progress)

    def process(self, batch: list[Record]) -> list[Record | Reject]:
        """A whole batch through one stream, in the batch's order (for callers that have a batch)."""
        stream = self.stream(Progress(self.name))
        out = [item for record in batch for item in stream.push(record)]
        out += stream.finish()
        order = {rid: i for i, rid in enumerate(rid for record in batch for rid in self.sample_ids(record))}
        return sorted(out, key=lambda item: order[item.id])

    def close(self) -> None:
        """Flush the store and release the backend."""
        if self._store is not None:
            self._store.close()
            self._backend.close()
            self._store = None

    def sample_ids(self, record: Record) -> list[str]:
        """The ids of the samples a record becomes, its copies' included."""
        samples = self._budgets.of(record).samples_per_document
        return [rid for document in (record, *record.copies) for rid in sample_ids(document.id, samples)]

    def report(self, layout: OutputLayout) -> dict[str, Any]:
        """This run's generation figures for summary.json, read back from its store parts."""
        return generation_report(self.store_dir, self.run_id, layout, self.config)

    def _chat(self) -> bool:
        if self.config.chat is not None:
            return self.config.chat
        return has_chat_template(self._backend.template_folder(tokenizer_file(self.tokenizer)))

    def _fingerprint(self, request: Request, sample: int) -> str:
        """What a stored result answered, whatever document asked it: the prompt, the model, the sampling settings
        and, past the first, the sample's number. The same text under another id or source finds it."""
        c = self.config
        asked = [c.model, request.messages, request.prompt, c.temperature, c.top_p, request.max_new_tokens, c.stop, c.seed]
        return hashlib.blake2b(json.dumps(asked + [sample] if sample else asked).encode(), digest_size=8).hexdigest()

    def _pending(self, record: Record) -> list[Pending]:
        """The requests of a record's samples, each with its store key."""
        pending, budget = [], self._budgets.of(record)
        for sample, rid in enumerate(sample_ids(record.id, budget.samples_per_document)):
            request = dataclasses.replace(self._prompts.request(rid, record.text), max_new_tokens=budget.max_new_tokens)
            pending.append(Pending(record, request, self._fingerprint(request, sample), sample))
        return pending

    def _claim(self, pending: Pending, window: Window) -> Location | object:
        """Where a request's result comes from: its place in the store; SEND (this caller sends it, and it is in
        flight for every stream of this worker from now on); or FOLLOW, when another stream of this worker has it
        in flight already (a bundle retried while the failed attempt's requests are still out): `window` then
        gets that result too, and the request is never sent twice."""
        key = pending.key
        with self._lock:
            if key in self._stored:
                return self._stored[key]
            if key in self._in_flight:
                self._in_flight[key].append(window.expect(pending))
                return FOLLOW
            self._in_flight[key] = []
            return SEND

    def _keep(self, pending: Pending, completion: Completion) -> dict[str, Any]:
        """Store a finished completion at once (a kill after this point cannot lose it), and hand it to the streams
        that follow it; runs in the backend's thread."""
        entry = self._store_entry(completion, pending)
        location = self._store.append(entry)
        key = pending.key
        with self._lock:
            if "raw" in entry:
                self._stored[key] = location  # a retried bundle in this worker reuses it
            followers = self._in_flight.pop(key, [])
        for follower in followers:
            follower(entry)
        return entry

    def _store_entry(self, completion: Completion, pending: Pending) -> dict[str, Any]:
        entry = {"id": completion.id, "key": pending.key, "retries": completion.retries, "t": time.time()}
        if completion.server:
            entry["server"] = completion.server
        if completion.failed_at:
            entry["failed_at"] = completion.failed_at
        if completion.finish_reason == "error":
            return {**entry, "error": completion.error}
        budget, output_tokens = pending.request.max_new_tokens, completion.output_tokens
        if not plausible_count(output_tokens, completion.text, budget):
            output_tokens = len(self._encoder.encode(completion.text, add_special_tokens=False).ids)
        reason = completion.finish_reason
        if reason == "unknown" and output_tokens >= budget:
            reason = "length"  # the server did not say why it stopped, but the budget ran out
        repairs = {"characters_replaced": completion.characters_replaced, "usage_invalid": completion.usage_invalid,
                   "over_budget": completion.over_budget or output_tokens > 2 * budget}
        return {**entry, "raw": completion.text, "finish_reason": reason, "prompt_tokens": completion.prompt_tokens,
                "output_tokens": output_tokens, **{name: value for name, value in repairs.items() if value}}

    def _make_samples(self, pending: Pending, entry: dict[str, Any]) -> list[Record | Reject]:
        """The sample of a finished request, and the same sample of each copy of its document (`dedup.duplicates:
        reuse`): the copy's own text, with the kept document's labels and thinking."""
        record, samples = pending.record, self._budgets.of(pending.record).samples_per_document
        documents = [(record, pending.request.id)]
        documents += [(with_kept_fields(copy, record), sample_ids(copy.id, samples)[pending.sample]) for copy in record.copies]
        if "error" in entry:
            return self._set_aside(documents, "generation_failed", entry["error"])
        raw, replaced = sanitise(entry["raw"])  # stored by another writer, it may hold what no tokenizer takes
        thinking, limit = postprocess.clean(raw), 2 * pending.request.max_new_tokens
        encoding = self._encoder.encode(thinking, add_special_tokens=False)
        over_budget = entry.get("over_budget", False) or len(encoding.ids) > limit
        if len(encoding.ids) > limit:  # cut at twice the budget: no server answer is kept longer
            thinking = thinking[:encoding.offsets[limit - 1][1]]
            encoding = self._encoder.encode(thinking, add_special_tokens=False)
        reason = "length" if over_budget else postprocess.finish_reason(raw, entry["finish_reason"])
        flags = postprocess.flags(thinking, reason, self.config.repetition_ngram, self.config.repetition_threshold)
        if over_budget:
            flags.append("over_budget")
        if entry.get("characters_replaced") or replaced:
            flags.append("invalid_characters")
        if "\x00" in thinking:  # never in the shards, as the reader sets aside documents holding one (tpt.io.read)
            return self._set_aside(documents, "nul_bytes", f"the thinking contains NUL characters ({len(thinking):,} characters)")
        if flags and self.config.flagged == "reject":
            return self._set_aside(documents, f"thinking_{flags[0]}", f"thinking flagged {', '.join(flags)} ({len(thinking):,} characters)")
        out = []
        for document, rid in documents:
            sample = document.replace(id=rid, copies=[]).with_thinking(
                thinking, self.config.separator, thinking_tokens=len(encoding.ids), finish_reason=reason,
                thinking_flags=flags if self.config.flagged == "flag" else [], thinking_budget=pending.request.max_new_tokens)
            out.append(sample.replace(sample_tokens=len(self._encoder.encode(sample.text, add_special_tokens=False).ids)))
        return out

    def _set_aside(self, documents: list[tuple[Record, str]], reason: str, detail: str) -> list[Reject]:
        """A failed or flagged sample's reject, for its document and each copy (samples of their own ids)."""
        return [Reject.of(document.replace(id=rid), self.name, reason, detail, duplicate_of=document.duplicate_of)
                for document, rid in documents]


def sample_ids(document_id: str, samples: int) -> list[str]:
    """One request per sample: the document id itself, or id#k when several samples are asked for."""
    return [document_id] if samples == 1 else [f"{document_id}#{k}" for k in range(samples)]


class Pending(NamedTuple):
    """A sample's request on its way: the record it is for, the request, the key its result is stored under, and
    which of the record's samples it is."""

    record: Record
    request: Request
    key: str
    sample: int


class ThinkStream(StageStream):
    """One window of requests in flight for a bundle or task; stored results are read back, not sent."""

    def __init__(self, think: Think, progress: Progress):
        self.think, self.progress = think, progress
        self.window = Window(think._backend, think.config.max_in_flight, keep=think._keep)
        self._resumed: list[tuple[Pending, Location]] = []

    def push(self, record: Record) -> list[Record | Reject]:
        todo = []
        for pending in self.think._pending(record):
            location = self.think._claim(pending, self.window)
            if location is SEND:
                todo.append((pending, pending.request))
            elif location is not FOLLOW:
                self._resumed.append((pending, location))
        finished = self.window.finished()
        while todo and self.window.room <= 0:  # full: wait for a slot, handing on what finished meanwhile
            finished += self.window.finished(wait=True)
        self.window.submit(todo)  # the window is full again while the earlier stages prepare the next record
        out = self._read_resumed() if len(self._resumed) >= RESUMED_PER_READ else []
        return out + self._samples(finished)  # after the submit: a claimed request is always sent

    def finish(self) -> Iterator[Record | Reject]:
        yield from self._read_resumed()
        for finished in self.window.drain():
            yield from self._samples([finished])
        self.think._store.flush()  # the bundle's results are durable, on a disk or an object store

    def _samples(self, finished: list[tuple[Pending, dict[str, Any]]]) -> list[Record | Reject]:
        for _, entry in finished:
            self.progress.update(1, entry.get("output_tokens", 0))
        return [sample for pending, entry in finished for sample in self.think._make_samples(pending, entry)]

    def _read_resumed(self) -> list[Record | Reject]:
        resumed, self._resumed = self._resumed, []
        if not resumed:
            return []
        entries = self.think._store.fetch([location for _, location in resumed])
        self.progress.update(len(resumed))
        return [sample for (pending, _), entry in zip(resumed, entries) for sample in self.think._make_samples(pending, entry)]


def generation_report(store_dir: str, run_id: str, layout: OutputLayout, config: GenerateConfig) -> dict[str, Any]:
    """Tokens, throughput, retries and failures of one run (in all and per server), and the device-hours the
    whole corpus would take at its rate."""
    starts, ends, generated, failed = [], [], [], 0
    input_tokens = output_tokens = retried = 0
    repaired: Counter = Counter()  # answers put right (tpt.generate.answers), by what was wrong
    replaced = 0
    writers = set()
    servers: defaultdict[str | None, Counter] = defaultdict(Counter)
    for writer, entry in read_entries(store_dir, run_id):
        if "started" in entry:
            starts.append(entry["started"])
            continue
        writers.add(writer)
        ends.append(entry["t"])
        retried += entry["retries"]
        server = servers[entry.get("server")]
        for url in entry.get("failed_at", ()):
            servers[url]["failed_attempts"] += 1
        if "error" in entry:
            failed += 1
            server["failed"] += 1
        else:
            generated.append(entry["output_tokens"])
            input_tokens += entry["prompt_tokens"]
            output_tokens += entry["output_tokens"]
            server["requests"] += 1
            server["output_tokens"] += entry["output_tokens"]
            repaired.update(name for name in REPAIRS if entry.get(name))
            replaced += entry.get("characters_replaced", 0)
    seconds = max(ends) - min(starts) if ends else 0.0
    rate = output_tokens / seconds if seconds > 0 else None
    samples, reused = _samples_asked(layout)
    report: dict[str, Any] = {
        "backend": config.backend,
        "model": config.model,
        "requests_generated": len(generated),
        "requests_resumed": max(samples - len(generated) - failed, 0),
        "requests_retried": retried,
        "requests_failed": failed,
        "samples_reusing_thinking": reused,  # copies of a kept document, written with its thinking (dedup reuse)
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "generation_seconds": round(seconds, 3),
        "output_tokens_per_second": round(rate, 2) if rate else None,
        **{f"answers_{what}": repaired[name] for name, what in REPAIRS.items()},
        "characters_replaced": replaced,
    }
    if servers.keys() - {None}:  # served over HTTP: each server's share
        report["servers"] = {url: {name: servers[url][name] for name in SERVER_COUNTS} | {
            "output_tokens_per_second": round(servers[url]["output_tokens"] / seconds, 2) if seconds > 0 else None}
            for url in sorted(filter(None, servers))}  # a request that failed before reaching a server names none
    if rate and generated:
        # every sample of the corpus at this run's mean thinking length and throughput
        hours = samples * (output_tokens / len(generated)) / rate / 3600
        devices = build_backend(config).devices(len(writers))
        report["estimated_hours_whole_corpus"] = round(hours, 4)
        report["estimated_gpu_hours_whole_corpus"] = round(hours * devices, 4)
        report["devices_assumed"] = devices
    return report


def _samples_asked(layout: OutputLayout) -> tuple[int, int]:
    """The samples the think stage asked for (those with thinking in the shards, and those it set aside), and the
    copies that took a kept document's thinking instead of asking."""
    import pyarrow.compute as pc  # here, not in every worker that imports the stage

    asked = reused = 0
    if layout.exists(layout.manifest):
        written = layout.read_parquet(layout.manifest, columns=["finish_reason", "duplicate_of"])
        thought, copy = pc.is_valid(written.column("finish_reason")), pc.is_valid(written.column("duplicate_of"))
        reused = pc.sum(pc.and_(thought, copy)).as_py() or 0
        asked = (pc.sum(thought).as_py() or 0) - reused
    for reject in read_rejects(layout):
        if reject["stage"] == Think.name:
            asked += reject.get("duplicate_of") is None
            reused += reject.get("duplicate_of") is not None
    return asked, reused
