"""Runs against a teacher server that answers badly, on both engines with one worker and a real HTTP server: any
answer, from a malformed shape to one that never ends, is a sample or a reject with its reason, never a crash, and
never a reason for the rerun to fail; credentials in a server's URL reach no file and no log; the end-of-run
summary tells what generation did."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import re
from pathlib import Path

import pytest
import yaml
from loguru import logger as loguru  # datatrove's log

from tests.conftest import wait_until, write_jsonl
from tests.test_generate_openai import SERVED, FaultInjectionServer, free_port
from tpt.cli import main as cli
from tpt.config import GenerateConfig, PipelineConfig, load_config
from tpt.generate.answers import stored_bytes
from tpt.generate.backends import build_backend
from tpt.generate.backends import openai as openai_backend
from tpt.io.output import OutputLayout, read_rejects
from tpt.progress import log as progress_log
from tpt.run import execute

ENGINES = ("beam", "datatrove")
SECRET = "pa55-w0rd"
BUDGET = 32  # max_new_tokens of every hostile run
ANSWERS = 200


def documents(count: int, name: str = "doc") -> list[dict]:
    return [{"id": f"{name}-{i}", "text": f"{name}-{i}: a short document of the corpus, number {i}."} for i in range(count)]


def config_of(folder: Path, url: str, docs: list[dict]) -> Path:
    """A config file over `docs`, thinking from the openai backend at `url` (short timeout, one retry)."""
    write_jsonl(folder / "docs.jsonl", docs)
    generate = {"backend": "openai", "model": SERVED, "max_new_tokens": BUDGET,
                "max_in_flight": 64, "openai": {"base_urls": [url], "timeout": 1.0, "retries": 1}}
    (folder / "config.yaml").write_text(yaml.safe_dump({"sources": [{"name": "web", "path": "docs.jsonl"}], "generate": generate}))
    return folder / "config.yaml"


def load(config: Path, out: Path) -> PipelineConfig:
    return load_config(config).with_output_dir(str(out))


@contextlib.contextmanager
def logs_of_the_run():
    """Everything a run logs or prints to stderr (tpt's logging, datatrove's loguru, threads' uncaught errors); not
    the stand-in server's own log (it logs each client that hangs up before its answer is written)."""
    text = io.StringIO()
    handler, root = logging.StreamHandler(text), logging.getLogger()
    handler.addFilter(lambda record: not record.name.startswith(("aiohttp.server", "aiohttp.access")))
    level = root.level
    for logger in (root, progress_log):  # progress lines do not propagate: they go to stderr in every worker
        logger.addHandler(handler)
    root.setLevel(logging.INFO)
    sink = loguru.add(text, level="INFO")
    try:
        with contextlib.redirect_stderr(text):
            yield text
    finally:
        with contextlib.suppress(ValueError):  # datatrove's tasks replace every loguru sink (theirs write to sys.stderr)
            loguru.remove(sink)
        for logger in (root, progress_log):
            logger.removeHandler(handler)
        root.setLevel(level)


def assert_complete(summary: dict, count: int) -> None:
    """Every document read is a sample or a reject, and summary.json is strict JSON."""
    totals = summary["totals"]
    assert totals["read"] == totals["written"] + totals["rejected"] == count
    json.dumps(summary, allow_nan=False)


@pytest.fixture(scope="module", params=ENGINES)
def one_worker_run(request, tmp_path_factory):
    """One worker on each engine, against a server whose URL holds credentials: one request fails for good (404),
    one once (500), so an error, a reject and a retry name the server too."""
    server = FaultInjectionServer(["404", "500"])
    try:
        folder = tmp_path_factory.mktemp(f"one-worker-{request.param}")
        url = server.url.replace("http://", f"http://tpt:{SECRET}@")
        with logs_of_the_run() as logs, pytest.MonkeyPatch.context() as patch:
            patch.setattr(openai_backend, "LOG_INTERVAL", 0.0)  # the servers' status line, after every request
            summary = execute(load(config_of(folder, url, documents(4)), folder / "out"), request.param, workers=1)
        yield request.param, summary, folder / "out", logs.getvalue(), server
    finally:
        server.close()


def test_every_engine_finishes_with_one_worker_and_the_openai_backend(one_worker_run):
    """datatrove with one local worker ran the stages in its driver, then failed to copy the stage for the next job
    (`cannot pickle '_thread.lock' object`), after all the work and before publishing."""
    engine, summary, out, _, _ = one_worker_run
    assert_complete(summary, 4)
    think = summary["stages"]["think"]
    assert (summary["engine"]["name"], summary["engine"]["workers"], summary["totals"]["rejected"]) == (engine, 1, 1)
    assert (think["requests_generated"], think["requests_failed"], think["requests_retried"]) == (3, 1, 1)
    assert OutputLayout(out).read_json(OutputLayout.summary) == summary  # published


def test_credentials_in_a_server_url_reach_no_file_and_no_log(one_worker_run):
    _, summary, out, logs, server = one_worker_run
    shown = server.url.replace("http://", "http://***@")
    assert list(summary["stages"]["think"]["servers"]) == [shown]
    (reject,) = read_rejects(OutputLayout(out))
    assert reject["detail"].startswith(f"HTTP 404 from {shown}/chat/completions: ")
    assert f"{shown}: 0 in flight" in logs and SECRET not in logs
    leaks = [str(path) for path in out.rglob("*") if path.is_file() and SECRET.encode() in path.read_bytes()]
    assert not leaks
    unreachable = f"http://tpt:{SECRET}@127.0.0.1:{free_port()}/v1"  # the run's one-line error names the server
    with pytest.raises(ConnectionError) as error:
        build_backend(GenerateConfig(backend="openai", model=SERVED, openai={"base_urls": [unreachable]})).check()
    assert unreachable.replace(f"tpt:{SECRET}", "***") in str(error.value) and SECRET not in str(error.value)


@pytest.mark.parametrize("script, rejected", [([], 0), (["404"], 1)])
def test_the_run_summary_shows_generation_and_lists_only_what_exists(tmp_path, capsys, script, rejected):
    """It said nothing of generation, the run's main cost, and listed a rejects/ folder a run without rejects has not."""
    server = FaultInjectionServer(script)
    try:
        config = config_of(tmp_path, server.url, documents(3))
        assert cli(["run", str(config), "--output", str(tmp_path / "out"), "--workers", "1"]) == 0
    finally:
        server.close()
    printed = capsys.readouterr().out
    think = json.loads((tmp_path / "out" / "summary.json").read_text())["stages"]["think"]
    assert (f"  generation: {3 - rejected} generated, 0 resumed, {rejected} failed, 0 retries; "
            f"{think['output_tokens']:,} output tokens in {think['generation_seconds']:.1f} s, ") in printed
    assert re.search(r"output tokens in [\d.]+ s, [\d,]+ tokens/s\n", printed)
    listed = re.findall(r"^  \w+: +(\S+)$", printed, re.MULTILINE)
    assert len(listed) == 4 + bool(rejected) and all(Path(path).exists() for path in listed)
    assert ("rejects:" in printed) == bool(rejected)


# Hostile answers: eight kinds in turn, each going round its own catalogue (so every entry is thrown), the details
# drawn by a seeded generator.

def pick(n: int, catalogue: list):
    """The catalogue's entry for the n-th answer of its kind: round the catalogue."""
    return catalogue[n % len(catalogue)]


def chat(content: str = '"a thought"', usage: str = '{"prompt_tokens": 3, "completion_tokens": 4}', reason: str = '"stop"',
         extra: str = "") -> str:
    """A chat completion's JSON text, each part as the JSON text given."""
    return f'{{"choices": [{{"message": {{"content": {content}}}, "finish_reason": {reason}}}], "usage": {usage}{extra}}}'


def events(*lines: str, piece: int = 0) -> dict:
    """A server-sent-events answer of these lines, written `piece` bytes at a time."""
    return {"body": "".join(line + "\n\n" for line in lines).encode(), "headers": {"Content-Type": "text/event-stream"}, "piece": piece}


def delta(text: str) -> str:
    return "data: " + json.dumps({"choices": [{"delta": {"content": text}}]}).replace("\\\\u", "\\u")


def bad_shape(rng: random.Random, n: int):
    return "200:" + pick(n, [
        "null", "[]", "{}", "42", '"text"', "NaN", "", '{"choices": "x"}', '{"choices": [1]}', '{"choices": {"0": {}}}',
        '{"choices": [{"message": "x"}]}', '{"choices": [{"message": null}]}', '{"choices": [{"text": "no message"}]}',
        '{"choices": [{"message": {"content": "cut sh', '{"choices": []} and more', "[" * 50_000 + "]" * 50_000,
        '{"choices": [{"message": {"content": "twice"}, "message": {"content": "the key"}}]}',
        '{"choices": [{"delta": {"content": "a delta in a JSON answer"}}]}',
    ])


def wrong_type(rng: random.Random, n: int):
    content = rng.choice(["5", '["a"]', '{"a": 1}', "true", "null", '""', '"fine"'])
    return "200:" + pick(n, [
        chat(content=content, reason=rng.choice(['"stop"', '["stop"]', '{"a": 1}', "7", "null", '"eos"'])),
        '{"choices": [{"message": {"content": "x", "reasoning_content": ' + content + '}, "finish_reason": "stop"}]}',
        chat(extra=', "choices": 5'),
    ])


def huge(rng: random.Random, n: int):
    words = " ".join(f"w{i}" for i in range(rng.randint(100, 3000)))  # within the byte cap, past twice the budget
    return pick(n, ["endless-json", "endless-sse", "200:" + chat(json.dumps(words)), {"body": b" " * 200_000 + chat().encode()},
                       "200:" + chat(extra=', "logprobs": "' + "x" * 100_000 + '"')])


def invalid_code_points(rng: random.Random, n: int):
    escape = rng.choice(["\\ud800", "\\udfff", "\\udc00\\ud800", "\\ud83d", "\\u0000", "\\uffff", "\\ufeff"])
    raw = rng.choice([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80"])
    return pick(n, [
        "200:" + chat(f'"text {escape} here"'),
        "200:" + '{"choices": [{"message": {"content": "x", "reasoning_content": "' + escape + '"}, "finish_reason": "stop"}]}',
        {"body": chat('"bytes X here"').encode().replace(b"X", raw)},
        {"body": b"\xef\xbb\xbf" + chat().encode()},  # a byte-order mark
        "200:" + chat(usage=f'{{"prompt_tokens": "{escape}", "completion_tokens": 4}}'),
        events(delta(f"half a pair {escape}"), "data: [DONE]"),
    ])


def odd_usage(rng: random.Random, n: int):
    value = pick(n, ["NaN", "Infinity", "-Infinity", "-3", "2.5", "1e400", '"7"', "true", "null", "[1]", "{}", "9" * 30,
                        "1" + "0" * 5000])
    return "200:" + chat(usage=rng.choice([f'{{"prompt_tokens": {value}, "completion_tokens": 4}}',
                                           f'{{"prompt_tokens": 3, "completion_tokens": {value}}}', value]))


def sse_oddity(rng: random.Random, n: int):
    lines = pick(n, [
        [delta("no"), delta(" end")],
        ["data: [DONE]"],
        [": ping", "event: message", "id: 1", delta("after comments"), "data: [DONE]"],
        [delta("carriage") + "\r", "data: [DONE]\r"],
        ["data: {not json", "data: [DONE]"],
        ["data: null"],
        ["data: [1, 2]"],
        ['data: {"choices": [], "usage": {"completion_tokens": NaN}}', delta("late"), "data: [DONE]"],
        [delta("x" * 200_000)],  # one event past the cap
        [],
        [chat()],  # JSON, labelled as events
    ])
    return events(*lines, piece=rng.choice([0, 1, 5, 64]) if sum(map(len, lines)) < 10_000 else 0)


def http_error(rng: random.Random, n: int):
    status = pick(n, [400, 401, 403, 404, 413, 422, 429, 500, 502, 503, 302])
    headers = {"Location": "/v1/nowhere"} if status == 302 else {}
    if status in (429, 503):  # never a long one: a Retry-After is honoured up to 30 s, which would only slow the test
        headers["Retry-After"] = rng.choice(["nan", "-1", "abc", "", "Wed, 21 Oct 2015 07:28:00 GMT", "0.01"])
    body = rng.choice([b"", b'{"error": {"message": "no"}}', b"<html>bad gateway</html>", b"\xff\xfe" * 10, b"e" * 2_000_000])
    return {"status": status, "headers": headers, "body": body}


def slow_or_dropped(rng: random.Random, n: int):
    body = chat().encode()
    return pick(n, ["timeout", "disconnect", "cut-body", "not-http", {"body": body, "piece": 8, "pause": 0.02},
                       {"body": body, "drop_after": rng.randrange(len(body))}])


KINDS = (bad_shape, wrong_type, huge, invalid_code_points, odd_usage, sse_oddity, http_error, slow_or_dropped)


def hostile_answers(count: int, seed: int) -> list:
    rng = random.Random(seed)
    return [KINDS[i % len(KINDS)](rng, i // len(KINDS)) for i in range(count)]


@pytest.fixture(scope="module", params=ENGINES)
def hostile_run(request, tmp_path_factory):
    """ANSWERS documents, each answered by its own hostile answer, through one engine with one worker."""
    answers = hostile_answers(ANSWERS, seed=22)
    server = FaultInjectionServer([], choose=lambda body: answers[int(re.search(r"fuzz-(\d+)", json.dumps(body)).group(1))])
    try:
        folder = tmp_path_factory.mktemp(f"hostile-{request.param}")
        config = config_of(folder, server.url, documents(ANSWERS, "fuzz"))
        with logs_of_the_run() as logs:
            summary = execute(load(config, folder / "out"), request.param, workers=1)
        wait_until(lambda: "writing" not in server.endless, "every endless answer's connection closed", deadline=30)
        yield request.param, config, folder / "out", summary, logs.getvalue(), server
    finally:
        server.close()


def test_hostile_answers_are_samples_or_rejects_and_never_stop_the_run(hostile_run):
    _, _, out, summary, logs, server = hostile_run
    assert_complete(summary, ANSWERS)
    think = summary["stages"]["think"]
    assert think["requests_generated"] + think["requests_failed"] == ANSWERS and "Traceback" not in logs
    assert min(think["requests_generated"], think["requests_failed"], think["answers_over_budget"],
               think["answers_with_invalid_characters"], think["answers_with_invalid_usage"]) > 0
    assert {r["reason"] for r in read_rejects(OutputLayout(out))} <= {"generation_failed", "nul_bytes"}  # NUL: as at read
    # bounded: no endless answer was read whole, and no stored result is longer than an answer within its budget
    assert server.endless and set(server.endless) == {"cut off"}
    assert max(len(line) for part in (out / "thinking").glob("*.jsonl") for line in part.read_bytes().splitlines()) <= stored_bytes(BUDGET)


def test_a_rerun_over_hostile_answers_resumes_them(hostile_run, tmp_path):
    """The other engine reruns the run: every stored answer is read back and used, only the failures are asked again."""
    engine, config, out, summary, _, _ = hostile_run
    other = next(e for e in ENGINES if e != engine)
    with logs_of_the_run() as logs:
        rerun = execute(load(config, out), other, workers=1)
    assert_complete(rerun, ANSWERS)
    assert rerun["stages"]["think"]["requests_resumed"] == summary["stages"]["think"]["requests_generated"]
    assert "Traceback" not in logs.getvalue()
