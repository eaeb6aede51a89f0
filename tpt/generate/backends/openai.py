"""An asyncio client for any OpenAI-compatible server (vllm serve, SGLang, TGI, transformers serve, llama.cpp).

At most `max_in_flight` requests at once, spread round-robin over `base_urls`;
each has a timeout and is retried with exponential backoff and full jitter on
429, 5xx, timeouts and dropped connections. Other HTTP errors (an unknown
model, a prompt over the context) are permanent: no retry, the reason is kept.
The API key comes from the environment variable the config names and is never
logged. Answers may be JSON or server-sent events (some servers stream even
when asked not to).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import time

import aiohttp

from tpt.config import GenerateConfig
from tpt.generate.types import Completion, OnDone, Request, failed, request_seed

log = logging.getLogger(__name__)

BACKOFF_SECONDS = 0.5  # the first retry waits up to this; each later one doubles it
BACKOFF_CAP_SECONDS = 30.0
PREFLIGHT_TIMEOUT = 30.0
LOG_INTERVAL = 10.0


class RetryableError(Exception):
    """A failure worth retrying: 429, 5xx, a timeout, a dropped connection."""


class PermanentError(Exception):
    """A failure a retry cannot fix: 4xx other than 429, an answer that is not a completion."""


class OpenAIBackend:
    def __init__(self, config: GenerateConfig):
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self.in_flight = 0
        self.retried = 0
        self.failed = 0

    def setup(self) -> None:
        """Open the event loop and session, and check every server answers and serves the model."""
        if self._loop is not None:
            return
        self._loop = asyncio.new_event_loop()
        self._urls = itertools.cycle([url.rstrip("/") for url in self.config.base_urls])
        self._session: aiohttp.ClientSession | None = None
        self._logged_at = time.monotonic()
        self._loop.run_until_complete(self._preflight())

    def generate(self, requests: list[Request], on_done: OnDone | None = None) -> list[Completion]:
        self.setup()
        return self._loop.run_until_complete(self._generate_all(requests, on_done))

    def close(self) -> None:
        if self._loop is not None:
            if self._session is not None:
                self._loop.run_until_complete(self._session.close())
            self._loop.close()
            self._loop = None

    async def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            key = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            self._session = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
                connector=aiohttp.TCPConnector(limit=self.config.max_in_flight),
            )
        return self._session

    async def _preflight(self) -> None:
        """Fail at once, naming the URL, when a server is unreachable or does not serve `model`."""
        session = await self._open_session()
        for url in self.config.base_urls:
            url = url.rstrip("/")
            try:
                async with session.get(f"{url}/models", timeout=aiohttp.ClientTimeout(total=PREFLIGHT_TIMEOUT)) as response:
                    if response.status != 200:
                        continue  # some servers (transformers serve) have no usable model list
                    served = [m.get("id") for m in (await response.json(content_type=None)).get("data", [])]
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
                raise ConnectionError(f"generate.base_urls: no OpenAI-compatible server answers at {url} ({type(error).__name__}: {error})") from None
            if served and self.config.model not in served:
                raise ValueError(f"generate.model: the server at {url} does not serve {self.config.model!r}; it serves {served}")

    async def _generate_all(self, requests: list[Request], on_done: OnDone | None) -> list[Completion]:
        await self._open_session()
        slots = asyncio.Semaphore(self.config.max_in_flight)
        return list(await asyncio.gather(*(self._one(request, slots, on_done) for request in requests)))

    async def _one(self, request: Request, slots: asyncio.Semaphore, on_done: OnDone | None) -> Completion:
        async with slots:
            self.in_flight += 1
            try:
                completion = await self._with_retries(request)
            finally:
                self.in_flight -= 1
        self.failed += completion.finish_reason == "error"
        if on_done:
            on_done(completion)
        if time.monotonic() - self._logged_at >= LOG_INTERVAL:
            self._logged_at = time.monotonic()
            log.info("openai: %d requests in flight, %d retries, %d failed", self.in_flight, self.retried, self.failed)
        return completion

    async def _with_retries(self, request: Request) -> Completion:
        chat = request.messages is not None
        body = self._body(request)
        for attempt in itertools.count():
            url = f"{next(self._urls)}/{'chat/completions' if chat else 'completions'}"
            try:
                completion = await self._post(url, body, request.id, chat)
                completion.retries = attempt
                return completion
            except PermanentError as error:
                return failed(request, str(error), attempt)
            except RetryableError as error:
                if attempt >= self.config.retries:
                    return failed(request, f"gave up after {attempt} retries: {error}", attempt)
                self.retried += 1
                await asyncio.sleep(backoff(attempt))

    def _body(self, request: Request) -> dict:
        body = {
            "model": self.config.model,
            "max_tokens": self.config.max_new_tokens,
            "temperature": self.config.temperature,
            "top_p": self.config.top_p,
            "seed": request_seed(self.config.seed, request.id),
            "stream": False,
        }
        if self.config.stop:
            body["stop"] = list(self.config.stop)
        if request.messages is not None:
            body["messages"] = list(request.messages)
        else:
            body["prompt"] = request.prompt
        return body

    async def _post(self, url: str, body: dict, request_id: str, chat: bool) -> Completion:
        try:
            async with self._session.post(url, json=body) as response:
                if response.status == 429 or response.status >= 500:
                    raise RetryableError(f"HTTP {response.status} from {url}: {(await response.text())[:200]}")
                if response.status >= 400:
                    raise PermanentError(f"HTTP {response.status} from {url}: {(await response.text())[:500]}")
                if response.content_type == "text/event-stream":
                    chunks = [json.loads(line[5:]) async for line in _sse_data(response)]
                else:
                    chunks = [await response.json(content_type=None)]
        except asyncio.TimeoutError:
            raise RetryableError(f"no complete answer from {url} within {self.config.timeout:g} s") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
            raise RetryableError(f"connection to {url} failed: {type(error).__name__}: {error}") from None
        except (ValueError, json.JSONDecodeError) as error:
            raise PermanentError(f"{url} answered something that is not JSON: {error}") from None
        return _completion(request_id, chunks, chat, url)


async def _sse_data(response: aiohttp.ClientResponse):
    """The `data:` payloads of a server-sent-events answer, up to `[DONE]`."""
    async for raw in response.content:
        line = raw.decode("utf-8").strip()
        if line.startswith("data:"):
            if line[5:].strip() == "[DONE]":
                return
            yield line


def _completion(request_id: str, chunks: list[dict], chat: bool, url: str) -> Completion:
    """One completion from a JSON answer or the chunks of a streamed one."""
    text, reason, usage = [], None, {}
    for chunk in chunks:
        choices = chunk.get("choices")
        if choices is None:
            raise PermanentError(f"{url} answered without choices: {json.dumps(chunk)[:300]}")
        for choice in choices[:1]:
            part = (choice.get("message") or choice.get("delta") or {}) if chat else choice
            # reasoning servers (vLLM/SGLang reasoning parsers) return the thinking apart from the content
            text += [part.get("reasoning_content") or part.get("reasoning") or "", part.get("content") or part.get("text") or ""]
            reason = choice.get("finish_reason") or reason
        usage = chunk.get("usage") or usage
    return Completion(
        request_id,
        "".join(text),
        "length" if reason == "length" else "stop",
        prompt_tokens=usage.get("prompt_tokens", 0),
        output_tokens=usage.get("completion_tokens", 0),
    )


def backoff(attempt: int) -> float:
    """Seconds before retry `attempt + 1`: exponential, capped, with full jitter so clients do not retry in step."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2**attempt))
