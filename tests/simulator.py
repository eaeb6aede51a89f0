"""A stand-in for a GPU inference server: it simulates the timing of vLLM-style continuous batching, not a model.

No GPU runs here, yet what a generation client must prove is that it keeps a
server's decode slots busy. This OpenAI-compatible HTTP server has `slots`
decode slots (vLLM's max_num_seqs) behind a FIFO queue. A request's output
length is drawn from a lognormal (mean `mean_tokens`, `sigma`) seeded by its
prompt and `seed` field, so every client gets the same lengths for the same
documents, and capped at its `max_tokens` (finish_reason "length"). It holds a
slot for length / `rate` seconds, then answers with an ordinary JSON completion
whose text is real English of about that many tokens (~4 characters a token,
ending in "</think>" unless capped). `instant` (or `slots=0`) answers at once,
to measure a client's own CPU cost.

GET /stats says how busy the slots were: the mean of occupied slots over the
busy period (first arrival to last completion) and the longest queue; POST
/reset clears it. It runs in its own process, so it never shares the GIL of the
client it measures:

    with SimulatedServer(slots=64, rate=250) as server:   # server.url ends in /v1
        ...
        print(server.stats())

    python -m tests.simulator --slots 64 --rate 250 --port 8000   # by hand
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import select
import socket
import subprocess
import sys
import time
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

from tests.corpora import demo_texts

ROOT = Path(__file__).resolve().parents[1]
CHARS_PER_TOKEN = 4
DEFAULT_MAX_TOKENS = 8192  # when a request names no max_tokens
END = "</think>"
START_TIMEOUT = 30.0


def request_key(body: dict[str, Any]) -> int:
    """A number that depends only on what a request asks (its prompt or messages, and its seed)."""
    asked = json.dumps([body.get("messages"), body.get("prompt"), body.get("seed")], sort_keys=True)
    return int.from_bytes(hashlib.blake2b(asked.encode(), digest_size=8).digest(), "big")


def output_length(body: dict[str, Any], mean_tokens: float, sigma: float) -> tuple[int, str]:
    """(output tokens, finish reason) of a request: a lognormal draw of mean `mean_tokens`, capped at its max_tokens."""
    draw = random.Random(request_key(body)).lognormvariate(math.log(mean_tokens) - sigma**2 / 2, sigma)
    cap = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
    return (cap, "length") if draw >= cap else (max(round(draw), 1), "stop")


class Simulation:
    """The decode slots, the queue in front of them, and a record of every request."""

    def __init__(self, slots: int, rate: float, mean_tokens: float, sigma: float, instant: bool, model: str):
        self.slots, self.rate, self.mean_tokens, self.sigma, self.model = slots, rate, mean_tokens, sigma, model
        self.instant = instant or slots == 0
        self.free = slots
        self.waiting: deque[asyncio.Future] = deque()
        self.pool = " ".join(" ".join(text.split()) for text in demo_texts())  # real English to cut answers from
        assert len(self.pool) > 2 * DEFAULT_MAX_TOKENS * CHARS_PER_TOKEN, "the demo corpus is too small a text pool"
        self.reset()

    def reset(self) -> None:
        self.requests: list[tuple[float, float, float, int]] = []  # (arrival, start, end, output tokens)
        self.max_queue = 0

    async def occupy(self, tokens: int) -> None:
        """Hold a slot for the time `tokens` take to decode, after every request queued before this one."""
        arrival = time.time()
        if not self.instant:
            if self.free:
                self.free -= 1
            else:  # aiohttp never cancels a handler whose client left, so a queued request always gets its slot
                waiter = asyncio.get_running_loop().create_future()
                self.waiting.append(waiter)
                self.max_queue = max(self.max_queue, len(self.waiting))
                await waiter
        start = time.time()
        if not self.instant:
            try:
                await asyncio.sleep(tokens / self.rate)
            finally:
                self._release()
        self.requests.append((arrival, start, time.time(), tokens))

    def _release(self) -> None:
        """The freed slot goes straight to the longest-waiting request."""
        if self.waiting:
            self.waiting.popleft().set_result(None)
        else:
            self.free += 1

    def text(self, body: dict[str, Any], tokens: int, reason: str) -> str:
        """About `tokens` tokens of real text, from a place in the pool the request picks."""
        chars = tokens * CHARS_PER_TOKEN
        start = request_key(body) % (len(self.pool) - chars)
        text = self.pool[start:start + chars]
        return text[:-len(END)] + END if reason == "stop" else text

    def stats(self) -> dict[str, Any]:
        """Totals, and the mean of busy slots over the busy period: slot-seconds occupied / (last end - first arrival)."""
        if not self.requests:
            return {"requests": 0, "output_tokens": 0, "slot_seconds": 0.0, "first_arrival": None, "last_end": None,
                    "busy_period": 0.0, "mean_busy_slots": 0.0, "max_queue": 0, "slots": self.slots}
        first = min(r[0] for r in self.requests)
        last = max(r[2] for r in self.requests)
        slot_seconds = sum(end - start for _, start, end, _ in self.requests)
        return {
            "requests": len(self.requests),
            "output_tokens": sum(r[3] for r in self.requests),
            "slot_seconds": slot_seconds,
            "first_arrival": first,
            "last_end": last,
            "busy_period": last - first,
            "mean_busy_slots": slot_seconds / (last - first) if last > first else 0.0,
            "max_queue": self.max_queue,
            "slots": self.slots,
        }


def build_app(simulation: Simulation):
    from aiohttp import web

    async def complete(request: web.Request) -> web.Response:
        body = await request.json()
        chat = request.path.endswith("/chat/completions")
        tokens, reason = output_length(body, simulation.mean_tokens, simulation.sigma)
        await simulation.occupy(tokens)
        text = simulation.text(body, tokens, reason)
        asked = json.dumps(body.get("messages")) if chat else str(body.get("prompt"))
        prompt_tokens = len(asked) // CHARS_PER_TOKEN
        choice = {"index": 0, "finish_reason": reason, **({"message": {"role": "assistant", "content": text}} if chat else {"text": text})}
        return web.json_response({
            "id": f"sim-{request_key(body):x}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": simulation.model,
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": prompt_tokens + tokens},
        })

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": simulation.model, "object": "model", "owned_by": "simulator"}]})

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(simulation.stats())

    async def reset(_: web.Request) -> web.Response:
        simulation.reset()
        return web.json_response({"reset": True})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes([
        web.post("/v1/chat/completions", complete),
        web.post("/v1/completions", complete),
        web.get("/v1/models", models),
        web.get("/health", health),
        web.get("/stats", stats),
        web.post("/reset", reset),
    ])
    return app


async def serve(simulation: Simulation, port: int) -> None:
    """Listen on 127.0.0.1 (port 0: any free one), print the port once listening, and serve until killed."""
    from aiohttp import web

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    runner = web.AppRunner(build_app(simulation), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=1024).start()
    print(sock.getsockname()[1], flush=True)
    await asyncio.Event().wait()


class SimulatedServer:
    """One simulated server in its own process, for a `with` block; `url` ends in /v1."""

    def __init__(self, slots: int = 64, rate: float = 250.0, mean_tokens: float = 1500, sigma: float = 1.0,
                 instant: bool = False, model: str = "teacher"):
        self.command = [sys.executable, "-m", "tests.simulator", "--slots", str(slots), "--rate", str(rate),
                        "--mean-tokens", str(mean_tokens), "--sigma", str(sigma), "--model", model, *(["--instant"] if instant else [])]
        self.url = ""

    def __enter__(self) -> SimulatedServer:
        self.process = subprocess.Popen(self.command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            poller = select.poll()  # not select.select: a long test session's descriptors pass its limit of 1024
            poller.register(self.process.stdout, select.POLLIN)
            line = self.process.stdout.readline() if poller.poll(START_TIMEOUT * 1000) else ""
            if not line.strip().isdigit():
                raise RuntimeError(f"the simulator did not start within {START_TIMEOUT:g} s (exit code {self.process.poll()})")
            self.url = f"http://127.0.0.1:{int(line)}/v1"
            self._call("GET", "/health")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def reset(self) -> None:
        self._call("POST", "/reset")

    def settled_requests(self, longest: float, timeout: float = 30.0) -> int:
        """The requests the server answered, once it has answered every one it was sent (those of a killed client
        too): the count is unchanged, and nothing was answered for `longest` seconds (the most a request takes)."""
        deadline, previous = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            stats = self.stats()
            quiet = stats["last_end"] is None or time.time() - stats["last_end"] >= longest
            if quiet and stats["requests"] == previous:
                return previous
            previous = stats["requests"]
            time.sleep(0.5)
        raise RuntimeError(f"the simulated server still answered requests {timeout:g} s after the run ended")

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.url.removesuffix("/v1") + path, method=method)
        with urllib.request.urlopen(request, timeout=START_TIMEOUT) as response:
            return json.loads(response.read()) if response.headers.get_content_type() == "application/json" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=64, help="decode slots (vLLM's max_num_seqs); 0: answer at once")
    parser.add_argument("--rate", type=float, default=250.0, help="output tokens/s of each sequence")
    parser.add_argument("--mean-tokens", type=float, default=1500, help="mean output length (lognormal)")
    parser.add_argument("--sigma", type=float, default=1.0, help="sigma of the lognormal")
    parser.add_argument("--instant", action="store_true", help="answer at once (a client's own CPU cost)")
    parser.add_argument("--model", default="teacher", help="the served model name")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed on stdout)")
    args = parser.parse_args()
    simulation = Simulation(args.slots, args.rate, args.mean_tokens, args.sigma, args.instant, args.model)
    asyncio.run(serve(simulation, args.port))


if __name__ == "__main__":
    main()
