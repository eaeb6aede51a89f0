"""The openai backend against a real OpenAI-compatible server (`transformers serve` with the embedded teacher),
and against a fault-injection server for 500 / 429 / timeout / disconnect behaviour."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable

import pytest
from aiohttp import web

from tests.conftest import stage_report, think_all, wait_until, write_jsonl
from tpt.config import GenerateConfig
from tpt.generate.backends import build_backend
from tpt.generate.prompts import PromptBuilder, load_template
from tpt.generate.types import Request
from tpt.schema import Record, Reject
from tpt.stages.think import Think

SERVED = "served-model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate(config: GenerateConfig, requests: list[Request]):
    """(completions, backend): one batch through a fresh openai backend, closed afterwards."""
    backend = build_backend(config)
    try:
        return backend.generate(requests), backend
    finally:
        backend.close()


def served_config(url: str, **changes) -> GenerateConfig:
    # transformers serve (4.57) kills its generation thread when given stop strings: none are sent; </think> is cut locally
    return GenerateConfig(backend="openai", base_urls=[url], model="embedded", max_new_tokens=8, stop=[], chat=True, **changes)


def test_chat_completions_from_a_real_server(transformers_server):
    builder = PromptBuilder(load_template("default"), chat=True)
    requests = [builder.request(f"doc{i}", t) for i, t in enumerate(["Ice floats on water.", "Rust is iron oxide."])]
    completions, _ = generate(served_config(transformers_server), requests)
    assert [c.id for c in completions] == ["doc0", "doc1"]
    # (transformers serve answers 500 when two first requests race to load the model: the retry covers it)
    assert all(c.finish_reason == "stop" and c.text.strip() and c.error is None for c in completions)


def test_think_stage_over_a_real_server(transformers_server, tmp_path):
    stage = Think(served_config(transformers_server), "embedded", str(tmp_path))
    out = think_all(stage, [Record("a", "web", "Photosynthesis turns light into chemical energy.")])
    stage.close()
    assert not isinstance(out[0], Reject) and out[0].thinking and out[0].thinking_tokens > 0
    assert out[0].sample_tokens > out[0].thinking_tokens


class FaultInjectionServer:
    """A fake OpenAI-compatible server, only to inject faults: each request takes the next action of `script`, then
    `choose(body)`'s or `default`. An action is a name, or a dict of `_respond`'s arguments (an answer as given).

    A "slow" request is answered only once SLOW_AFTER others have been, whatever the machine's load. An
    "endless" answer never ends by itself: it is written until the client hangs up (or ENDLESS_BYTES are out), and
    `endless` says for each whether it is "writing", was "cut off" or "written whole".
    """

    SLOW_AFTER = 10
    ENDLESS_BYTES = 64 * 1024 * 1024

    def __init__(self, script: list, delay: float = 0.0, default: str = "ok", models_status: int = 200,
                 models_body: str | None = None, choose: Callable[[dict], str | dict] | None = None):
        self.script, self.delay, self.default, self.choose = list(script), delay, default, choose
        self.requests: list[dict] = []
        self.endless: list[str] = []
        self.in_flight = self.max_in_flight = self.answered = 0
        self._others_answered = asyncio.Event()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/v1/models", lambda request: web.Response(text=models_body, content_type="application/json")
                           if models_body is not None else web.json_response({"data": [{"id": SERVED}]}, status=models_status))
        app.router.add_post("/v1/chat/completions", self._answer)
        app.router.add_post("/v1/completions", self._answer)
        self._runner = web.AppRunner(app)
        self._closing = asyncio.Event()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._closing.set)
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        action = self.script.pop(0) if self.script else self.choose(body) if self.choose else self.default
        self.requests[-1]["at"] = time.monotonic()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if isinstance(action, dict):
                return await self._respond(request, **action)
            if action == "slow":
                await self._others_answered.wait()
            if action == "timeout":  # answer only when the server closes, long after the client's timeout
                await self._closing.wait()
            if action == "disconnect":
                request.transport.close()
                return web.Response()
            if action == "not-http":  # bytes that are no HTTP answer, then the connection closed
                request.transport.write(b"NOT HTTP AT ALL\r\n\r\n")
                request.transport.close()
                return web.Response()
            if action in ("500", "429", "404"):
                return web.json_response({"error": {"message": f"injected {action}"}}, status=int(action))
            if action == "429-retry-after":
                return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "1"})
            if action.startswith("no-reason"):  # no finish_reason; with "-full", as many tokens as the budget allowed
                used = body["max_tokens"] if action == "no-reason-full" else 1
                return web.json_response({"choices": [{"message": {"content": "half a thought"}}],
                                          "usage": {"prompt_tokens": 3, "completion_tokens": used}})
            if action == "sse":  # streamed although not asked to, ending with a usage-only chunk (stream_options)
                return await self._stream(request, [{"delta": {"role": "assistant"}}, {"delta": {"content": "thinking "}},
                                                    {"delta": {"content": "in parts"}}, {"delta": {}, "finish_reason": "length"}])
            if action.startswith("reasoning"):  # a reasoning parser's split; "-cut": the budget ran out inside the thinking
                cut = action == "reasoning-cut"
                message = {"reasoning_content": "the thinking", "content": None if cut else "\n\nthe answer"}
                return web.json_response({"choices": [{"message": message, "finish_reason": "length" if cut else "stop"}]})
            if action == "cut-body":  # a 200 whose body stops short of its Content-Length: the connection drops
                response = web.StreamResponse(headers={"Content-Type": "application/json"})
                response.content_length = 1000
                await response.prepare(request)
                await response.write(b'{"choices": [{"message": {"content": "half of')
                request.transport.close()
                return response
            if action.startswith("200:"):  # a 200 with this body as it is
                return web.Response(text=action[4:], content_type="application/json")
            if action.startswith("raw:"):  # a 200 with this body's characters as bytes (latin-1): bytes that are not UTF-8
                return web.Response(body=action[4:].encode("latin-1"), content_type="application/json")
            if action.startswith("endless"):  # a server that ignores max_tokens and never stops
                return await self._endless(request, sse=action == "endless-sse")
            text = f"<think>thinking for {body.get('prompt') or body['messages'][0]['content']}</think>"
            if "prompt" in body:
                return web.json_response({"choices": [{"text": text, "finish_reason": "stop"}],
                                          "usage": {"prompt_tokens": 3, "completion_tokens": 5}})
            return web.json_response({"choices": [{"message": {"content": text}, "finish_reason": "length"}]})
        finally:
            self.in_flight -= 1
            self.answered += action != "slow"
            if self.answered >= self.SLOW_AFTER:
                self._others_answered.set()

    async def _respond(self, request: web.Request, body: bytes = b"", status: int = 200, headers: dict | None = None,
                       piece: int = 0, pause: float = 0.0, drop_after: int | None = None) -> web.StreamResponse:
        """An answer exactly as given: `body` written `piece` bytes at a time (0: at once), `pause` seconds apart,
        the connection dropped after `drop_after` bytes."""
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/json", **(headers or {})})
        await response.prepare(request)
        body = body[:drop_after] if drop_after is not None else body
        for start in range(0, len(body), piece or len(body) or 1):
            await response.write(body[start:start + (piece or len(body))])
            await asyncio.sleep(pause)
        if drop_after is not None:
            request.transport.close()
        return response

    async def _endless(self, request: web.Request, sse: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream" if sse else "application/json"})
        await response.prepare(request)
        event = f"data: {json.dumps({'choices': [{'delta': {'content': 'more words '}}]})}\n\n".encode()
        chunk = event * (65536 // len(event)) if sse else b"more words " * 6000
        mine = len(self.endless)
        self.endless.append("writing")
        try:
            if not sse:
                await response.write(b'{"choices": [{"finish_reason": "stop", "message": {"content": "')
            for _ in range(self.ENDLESS_BYTES // len(chunk)):
                await response.write(chunk)
            await response.write(b"data: [DONE]\n\n" if sse else b'"}}]}')
            self.endless[mine] = "written whole"
        except (ConnectionError, RuntimeError):  # the client hung up
            self.endless[mine] = "cut off"
        return response

    async def _stream(self, request: web.Request, choices: list[dict]) -> web.StreamResponse:
        """A server-sent-events answer: one `data:` event per chunk, written apart, then usage and `[DONE]`."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for choice in choices:
            await response.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
        usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
        await response.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        return response


@pytest.fixture
def fault_server():
    servers = []

    def start(script=(), delay=0.0, default="ok", models_status=200, models_body=None, choose=None):
        servers.append(FaultInjectionServer(list(script), delay, default, models_status, models_body, choose))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def fault_config(*urls: str, **changes) -> GenerateConfig:
    return GenerateConfig(backend="openai", base_urls=list(urls), **{"model": SERVED, "timeout": 2.0, "retries": 4, **changes})


def test_retries_500_429_timeout_and_disconnect_then_succeeds(fault_server):
    server = fault_server(["500", "429", "timeout", "disconnect"])
    (completion,), backend = generate(fault_config(server.url), [Request("a", messages=({"role": "user", "content": "doc"},))])
    assert completion.finish_reason == "length" and completion.retries == 4 and completion.text == "<think>thinking for doc</think>"
    assert len(server.requests) == 5 and backend.retried == 4


def test_gives_up_after_the_configured_retries_with_the_reason(fault_server):
    server = fault_server(["500"] * 10)
    (completion,), _ = generate(fault_config(server.url, retries=2), [Request("a", prompt="doc")])
    assert completion.finish_reason == "error" and completion.retries == 2 and len(server.requests) == 3
    assert "gave up after 2 retries: HTTP 500" in completion.error


def test_permanent_errors_are_not_retried(fault_server):
    server = fault_server(["404"])
    (completion,), _ = generate(fault_config(server.url), [Request("a", prompt="doc")])
    assert completion.finish_reason == "error" and completion.retries == 0 and "HTTP 404" in completion.error and len(server.requests) == 1


def test_completions_endpoint_sampling_options_and_api_key(fault_server, monkeypatch, caplog):
    monkeypatch.setenv("TPT_TEST_KEY", "sk-secret-123")
    server = fault_server()
    config = fault_config(server.url, api_key_env="TPT_TEST_KEY", temperature=0.6, top_p=0.9, max_new_tokens=77)
    with caplog.at_level(logging.DEBUG):
        (completion,), _ = generate(config, [Request("a", prompt="doc")])
    sent = server.requests[0]
    assert sent["path"] == "/v1/completions" and sent["headers"]["Authorization"] == "Bearer sk-secret-123"
    assert {k: sent["body"][k] for k in ("model", "prompt", "max_tokens", "temperature", "top_p", "stop")} == {
        "model": SERVED, "prompt": "doc", "max_tokens": 77, "temperature": 0.6, "top_p": 0.9, "stop": ["</think>"]}
    assert (completion.finish_reason, completion.prompt_tokens, completion.output_tokens) == ("stop", 3, 5)
    assert "sk-secret-123" not in caplog.text


def test_requests_spread_over_servers_within_the_in_flight_bound(fault_server):
    first, second = fault_server(delay=0.2), fault_server(delay=0.2)
    completions, _ = generate(fault_config(first.url, second.url, max_in_flight=4), [Request(f"r{i}", prompt=str(i)) for i in range(16)])
    assert [c.text for c in completions] == [f"<think>thinking for {i}</think>" for i in range(16)]
    assert len(first.requests) + len(second.requests) == 16 and min(len(first.requests), len(second.requests)) >= 4
    assert first.max_in_flight + second.max_in_flight <= 4 + 1 and max(first.max_in_flight, second.max_in_flight) >= 2


def test_the_faster_server_receives_more_of_the_requests(fault_server):
    """Least-outstanding routing: the slow server still holds its requests when the fast one has answered."""
    slow, fast = fault_server(delay=0.4), fault_server(delay=0.02)
    completions, backend = generate(fault_config(slow.url, fast.url, max_in_flight=4), [Request(f"r{i}", prompt=str(i)) for i in range(40)])
    assert all(c.finish_reason == "stop" for c in completions)
    assert len(fast.requests) > 3 * len(slow.requests) > 0
    assert {c.server for c in completions} == {slow.url.rstrip("/"), fast.url.rstrip("/")}


def test_a_failing_server_is_set_aside_and_the_run_finishes_on_the_other(fault_server, tmp_path):
    broken, working = fault_server(default="500"), fault_server(delay=0.05)
    config = fault_config(broken.url, working.url, max_in_flight=4, retries=4, chat=True)
    stage = Think(config, "embedded", str(tmp_path))
    out = think_all(stage, [Record(f"d{i}", "web", f"Document {i}.") for i in range(12)])
    report = stage_report(stage, tmp_path)
    stage.close()
    assert all(not isinstance(r, Reject) for r in out) and report["requests_generated"] == 12
    servers = report["servers"]
    assert servers[working.url]["requests"] == 12 and servers[broken.url]["requests"] == 0
    assert servers[broken.url]["failed_attempts"] == len(broken.requests) >= 3
    assert len(broken.requests) <= 4 + 3  # set aside after 3 failures in a row: only requests already sent there fail


def test_429_retry_after_is_honoured(fault_server):
    server = fault_server(["429-retry-after"])
    (completion,), _ = generate(fault_config(server.url), [Request("a", prompt="doc")])
    assert completion.finish_reason == "stop" and completion.retries == 1
    assert server.requests[1]["at"] - server.requests[0]["at"] >= 0.95  # the backoff alone waits at most 0.5 s


def test_a_missing_finish_reason_is_never_taken_for_stop(fault_server, tmp_path):
    server = fault_server(["no-reason-full", "no-reason"])
    stage = Think(fault_config(server.url, chat=True, max_new_tokens=16, max_in_flight=1), "embedded", str(tmp_path))
    out_of_budget, stopped_early = think_all(stage, [Record("a", "web", "A document."), Record("b", "web", "Another.")])
    stage.close()
    assert out_of_budget.finish_reason == "length" and "truncated" in out_of_budget.thinking_flags
    assert stopped_early.finish_reason == "unknown" and stopped_early.thinking_flags == []


def test_unreachable_server_and_unknown_model_fail_at_setup(fault_server):
    with pytest.raises(ConnectionError, match=r"no OpenAI-compatible server answers at http://127.0.0.1:\d+/v1"):
        build_backend(fault_config(f"http://127.0.0.1:{free_port()}/v1")).setup()
    server = fault_server()
    with pytest.raises(ValueError, match=r"does not serve 'other-model'; it serves \['served-model'\]"):
        build_backend(fault_config(server.url, model="other-model")).setup()


def test_failed_generation_becomes_a_reject_and_is_retried_on_rerun(fault_server, tmp_path):
    server = fault_server(["500"] * 3)
    config = fault_config(server.url, retries=2, chat=True)
    first, second = Think(config, "embedded", str(tmp_path)), Think(config, "embedded", str(tmp_path))
    out = think_all(first, [Record("a", "web", "A document.")])
    first.close()
    assert isinstance(out[0], Reject) and out[0].reason == "generation_failed" and "HTTP 500" in out[0].detail
    rerun = think_all(second, [Record("a", "web", "A document.")])
    second.close()
    assert rerun[0].thinking.startswith("thinking for A document.") and rerun[0].finish_reason == "stop"  # </think> was seen


def test_a_streamed_answer_is_its_chunks_joined_with_the_last_reason(fault_server):
    server = fault_server(["sse"])
    (completion,), _ = generate(fault_config(server.url), [Request("a", messages=({"role": "user", "content": "doc"},))])
    assert (completion.text, completion.finish_reason, completion.error, completion.retries) == ("thinking in parts", "length", None, 0)
    assert (completion.prompt_tokens, completion.output_tokens) == (3, 4)  # from the usage-only chunk after the last choice


def test_a_reasoning_parsers_thinking_is_kept_and_its_answer_cut(fault_server, tmp_path):
    """vLLM/SGLang `--reasoning-parser` return the thinking apart from the answer after `</think>`, which they take
    out: the thinking is recorded, and the answer is cut as it is from a server that returns both in one text."""
    server = fault_server(["reasoning", "reasoning-cut"])
    stage = Think(fault_config(server.url, chat=True, max_in_flight=1), "embedded", str(tmp_path))
    ended, cut = think_all(stage, [Record("a", "web", "A document."), Record("b", "web", "Another.")])
    stage.close()
    assert (ended.thinking, ended.finish_reason, ended.thinking_flags) == ("the thinking", "stop", [])
    assert (cut.thinking, cut.finish_reason, cut.thinking_flags) == ("the thinking", "length", ["truncated"])


def test_a_server_without_a_usable_model_list_is_used(fault_server):
    """`/v1/models` answering 500 (transformers serve does) stops nothing: the server still generates."""
    server = fault_server(models_status=500)
    (completion,), _ = generate(fault_config(server.url), [Request("a", prompt="doc")])
    assert (completion.text, completion.finish_reason, completion.retries) == ("<think>thinking for doc</think>", "stop", 0)


def test_a_connection_dropped_mid_body_is_retried(fault_server):
    server = fault_server(["cut-body"])
    (completion,), backend = generate(fault_config(server.url), [Request("a", messages=({"role": "user", "content": "doc"},))])
    assert (completion.text, completion.finish_reason, completion.error) == ("<think>thinking for doc</think>", "length", None)
    assert (completion.retries, completion.failed_at, backend.retried, len(server.requests)) == (1, [server.url], 1, 2)


NOT_A_COMPLETION = "answered something that is not a completion: AttributeError:"


@pytest.mark.parametrize("chat, body, said", [
    (True, '{"error": "model overloaded"}', 'answered without choices: {"error": "model overloaded"}'),
    (True, '{"choices": []}', 'answered without a choice: {"choices": []}'),
    (True, '{"choices": [{"finish_reason": "stop"}]}', 'answered a choice without a message: {"choices": [{"finish_reason": "stop"}]}'),
    (False, '{"choices": [{"finish_reason": "stop"}]}', 'answered a choice without text: {"choices": [{"finish_reason": "stop"}]}'),
    (True, '["not", "an", "object"]', f"{NOT_A_COMPLETION} 'list' object has no attribute 'get'"),
    (True, '{"choices": [null]}', f"{NOT_A_COMPLETION} 'NoneType' object has no attribute 'get'"),
])
@pytest.mark.timeout(60)  # the way this fails is a request that never finishes
def test_an_answer_that_is_not_a_completion_is_set_aside_with_the_reason(fault_server, tmp_path, chat, body, said):
    """JSON with a 200 but no completion in it: a generation_failed reject naming the URL, not retried (the same
    request would get the same answer), never empty thinking recorded as ended."""
    server = fault_server([f"200:{body}"])
    stage = Think(fault_config(server.url, chat=chat), "embedded", str(tmp_path))
    (out,) = think_all(stage, [Record("a", "web", "A document.")])
    stage.close()
    endpoint = "chat/completions" if chat else "completions"
    assert isinstance(out, Reject) and (out.reason, out.detail) == ("generation_failed", f"{server.url}/{endpoint} {said}")
    assert len(server.requests) == 1


def chat_answer(content: str, usage: str = '{"prompt_tokens": 3, "completion_tokens": 4}') -> str:
    """The JSON text of a chat completion whose content is the JSON string literal `content` (escapes as written)."""
    return f'{{"choices": [{{"message": {{"content": "{content}"}}, "finish_reason": "stop"}}], "usage": {usage}}}'


def think_once(server, tmp_path, **changes) -> tuple[Record | Reject, dict]:
    """One document through a fresh think stage on `server`, and the run's generation report."""
    stage = Think(fault_config(server.url, chat=True, **changes), "embedded", str(tmp_path))
    (out,) = think_all(stage, [Record("a", "web", "A document.")])
    report = stage_report(stage, tmp_path)
    stage.close()
    return out, report


@pytest.mark.parametrize("answer, thinking, replaced", [
    ("200:" + chat_answer("lone \\ud800 surrogate"), "lone \ufffd surrogate", 1),  # a JSON escape of half a pair
    ("raw:" + chat_answer("bytes \xff\xfe that are not UTF-8"), "bytes \ufffd\ufffd that are not UTF-8", 2),
    ("200:" + chat_answer("clean text", '{"prompt_tokens": "\\udc00", "completion_tokens": 2}'), "clean text", 0),
])
def test_an_answer_with_invalid_code_points_is_repaired_flagged_stored_and_resumed(fault_server, tmp_path, answer, thinking, replaced):
    """Text no tokenizer or UTF-8 writer takes stopped the run, and every rerun (the same seed asks again)."""
    server = fault_server([answer])
    out, report = think_once(server, tmp_path)
    assert not isinstance(out, Reject) and out.thinking == thinking
    assert ("invalid_characters" in out.thinking_flags) == bool(replaced) and report["characters_replaced"] == replaced
    assert report["answers_with_invalid_characters"] == min(replaced, 1) and report["requests_generated"] == 1
    rerun, _ = think_once(server, tmp_path)  # read back from the store, not asked again
    assert (rerun.thinking, rerun.thinking_flags, len(server.requests)) == (out.thinking, out.thinking_flags, 1)


@pytest.mark.parametrize("body", ["[]", '{"data": ["m"]}', '{"data": null}', '{"data": [{"id": 5}]}', "not JSON",
                                  "[" * 100_000 + "]" * 100_000])
def test_a_model_list_that_is_not_one_is_a_one_line_error(fault_server, tmp_path, capsys, body):
    from tpt.cli import main as cli

    server = fault_server(models_body=body)
    write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "A document."}])
    config = tmp_path / "config.yaml"
    config.write_text(f"sources: [{{name: web, path: docs.jsonl}}]\n"
                      f"generate: {{backend: openai, model: {SERVED}, openai: {{base_urls: [{server.url}]}}}}\n")
    assert cli(["run", str(config), "--output", str(tmp_path / "out"), "--workers", "1"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.strip().splitlines()[-1].startswith(
        f"tpt run: error: generate.openai.base_urls: the server at {server.url} answered /models with something that is not a model list")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("action", ["endless-json", "endless-sse"])
def test_an_answer_that_never_ends_is_cut_at_its_byte_cap_and_never_read_whole(fault_server, action):
    """A server that ignores max_tokens: the client stops reading at the budget's byte cap and keeps what it read."""
    from tpt.generate.answers import answer_bytes

    server = fault_server([action])
    (completion,), _ = generate(fault_config(server.url, max_new_tokens=16), [Request("a", messages=({"role": "user", "content": "doc"},))])
    wait_until(lambda: server.endless[-1] != "writing", "the endless answer's connection closed", deadline=30)
    assert server.endless == ["cut off"]  # the client hung up: the body was never held whole
    assert (completion.over_budget, completion.finish_reason, completion.error) == (True, "length", None)
    assert completion.text.startswith("more words more words") and len(completion.text.encode()) <= answer_bytes(16)


def test_an_answer_past_twice_its_budget_is_cut_there_flagged_and_counted(fault_server, tmp_path):
    """Within the byte cap but 400 tokens for a budget of 16 (and a usage that claims 5): cut at 32 tokens."""
    words = " ".join(f"word{i}" for i in range(200))
    server = fault_server(["200:" + chat_answer(words, '{"prompt_tokens": 3, "completion_tokens": 5}')])
    out, report = think_once(server, tmp_path, max_new_tokens=16)
    assert not isinstance(out, Reject) and words.startswith(out.thinking) and 16 < out.thinking_tokens <= 32
    assert out.finish_reason == "length" and out.thinking_flags == ["truncated", "over_budget"]
    assert report["answers_over_budget"] == 1 and report["output_tokens"] > 32  # what the server sent, counted


@pytest.mark.parametrize("usage", [
    '{"prompt_tokens": NaN, "completion_tokens": Infinity}', '{"prompt_tokens": -5, "completion_tokens": -1}',
    '{"prompt_tokens": "3", "completion_tokens": true}', '{"prompt_tokens": 1e30, "completion_tokens": 2.5}', "[1, 2]", '"all of it"',
])
def test_token_counts_that_are_not_counts_are_counted_again(fault_server, tmp_path, usage):
    """summary.json got NaN and Infinity (no strict JSON parser reads them) and negative counts as given."""
    server = fault_server(["200:" + chat_answer("a short thought", usage)])
    out, report = think_once(server, tmp_path)
    json.dumps(report, allow_nan=False)
    assert not isinstance(out, Reject) and out.thinking == "a short thought"
    assert (report["input_tokens"], report["output_tokens"], report["answers_with_invalid_usage"]) == (0, out.thinking_tokens, 1)


def test_a_stored_result_that_cannot_be_used_is_generated_again(fault_server, tmp_path):
    """A stored result with text no tokenizer takes, or text that is not a string (written by hand or by another
    version), stopped every rerun; one stored whole before answers were bounded was read back whole."""
    from tpt.generate.answers import stored_bytes

    server = fault_server()
    docs = [Record(name, "web", f"Document {name}.") for name in "abcd"]
    first = Think(fault_config(server.url, chat=True, max_new_tokens=16), "embedded", str(tmp_path))
    fresh = think_all(first, docs)
    first.close()
    part = next((tmp_path / "thinking").glob("*.jsonl"))
    spoiled = {"a": "lone \ud800 surrogate", "b": 12, "c": "x" * (stored_bytes(16) + 1)}  # d stays as it was
    part.write_text("".join(json.dumps({**entry, "raw": spoiled.get(entry.get("id"), entry.get("raw"))}) + "\n"
                            for entry in map(json.loads, part.read_text().splitlines())))
    rerun = Think(fault_config(server.url, chat=True, max_new_tokens=16), "embedded", str(tmp_path))
    out = think_all(rerun, docs)
    rerun.close()
    assert out[0].thinking == "lone \ufffd surrogate" and "invalid_characters" in out[0].thinking_flags  # read back, repaired
    assert [(o.id, o.thinking) for o in out[1:]] == [(o.id, o.thinking) for o in fresh[1:]] and all(o.thinking for o in out)
    assert len(server.requests) == 4 + 2  # b and c asked again; a and d read back


@pytest.mark.parametrize("header", ["nan", "inf", "-inf"])
@pytest.mark.timeout(90)  # the way this fails is a retry that waits forever
def test_a_retry_after_that_is_no_number_of_seconds_is_left_to_the_backoff(fault_server, header):
    """`Retry-After: nan` made the retry sleep forever (asyncio waits NaN seconds without end), `inf` the 30 s cap."""
    from tpt.generate.backends.openai import BACKOFF_CAP_SECONDS

    server = fault_server([{"status": 503, "headers": {"Retry-After": header}, "body": b"busy"}])
    (completion,), _ = generate(fault_config(server.url), [Request("a", prompt="doc")])
    assert (completion.finish_reason, completion.retries) == ("stop", 1)
    assert server.requests[1]["at"] - server.requests[0]["at"] < BACKOFF_CAP_SECONDS


def test_every_prefix_of_an_answer_closes_to_json_that_keeps_what_came_first():
    """An answer past its byte cap is cut there: what was read is closed into JSON, its text a prefix of the whole."""
    from tpt.generate.backends.openai_answers import close_cut_json

    content = 'she said "no" \\ then é\nand [braces] {too}, 12.5'
    answer = json.dumps({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                                  "finish_reason": None, "logprobs": [1, -2.5e3, True, {"a": []}]}], "usage": {}})
    for end in range(1, len(answer) + 1):
        closed = json.loads(close_cut_json(answer[:end]))
        message = next(iter(closed.get("choices") or [{}]), {}).get("message", {})
        assert content.startswith(message.get("content", "")), answer[:end]
    assert json.loads(close_cut_json(answer)) == json.loads(answer)


def test_a_request_that_failed_before_reaching_a_server_leaves_the_summary_whole(fault_server, tmp_path, monkeypatch):
    """A failure that names no server beside answers that name theirs: the per-server figures compared None with a
    URL (TypeError) and the run failed in its summary, after all its work."""
    from tpt.generate.backends import openai

    completion = openai.Answer.completion
    calls = []

    def fails_once(answer, *args):  # a fault injected: the first answer fails as a bug would
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected")
        return completion(answer, *args)

    monkeypatch.setattr(openai.Answer, "completion", fails_once)
    server = fault_server()
    stage = Think(fault_config(server.url, chat=True, max_in_flight=1), "embedded", str(tmp_path))
    failed, kept = think_all(stage, [Record("a", "web", "A document."), Record("b", "web", "Another.")])
    report = stage_report(stage, tmp_path)
    stage.close()
    assert isinstance(failed, Reject) and failed.detail == "openai: unexpected RuntimeError: injected" and not isinstance(kept, Reject)
    assert (report["requests_failed"], list(report["servers"]), report["servers"][server.url]["requests"]) == (1, [server.url], 1)
