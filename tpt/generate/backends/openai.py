"""An asyncio client for any OpenAI-compatible server (vllm serve, SGLang, TGI, transformers serve, llama.cpp).

At most `max_in_flight` requests at once per process, each sent to the server
of `base_urls` (or of `base_urls_file`, followed while the run goes on) with
the fewest outstanding (tpt.generate.routing); each has a
timeout and is retried, on the least busy working server, with exponential
backoff and full jitter on 5xx, timeouts and dropped connections, and after
the wait a 429's Retry-After asks for. Other HTTP errors (an unknown
model, a prompt over the context) are permanent: no retry, the reason is kept.
The API key comes from the environment variable the config names and is never
logged. Answers may be JSON or server-sent events (some servers stream even
when asked not to).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import threading
import time
from pathlib import Path

import aiohttp

from tpt.config import GenerateConfig
from tpt.generate.routing import NoServer, Router, ServersFile
from tpt.generate.types import Backend, Completion, OnDone, Request, failed, request_seed
from tpt.progress import log as progress_log  # a worker's progress lines reach stderr on every engine

BACKOFF_SECONDS = 0.5  # the first retry waits up to this; each later one doubles it
BACKOFF_CAP_SECONDS = 30.0
PREFLIGHT_TIMEOUT = 30.0
LOG_INTERVAL = 10.0


class RetryableError(Exception):
    """A failure worth retrying: 429, 5xx, a timeout, a dropped connection."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after  # seconds the server asked for (Retry-After); None: back off


class PermanentError(Exception):
    """A failure a retry cannot fix: 4xx other than 429, an answer that is not a completion."""


class OpenAIBackend(Backend):
    """Requests run on an event loop in the backend's own thread, so callers keep submitting while they wait."""

    def __init__(self, config: GenerateConfig):
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self.retried = 0
        self.failed = 0

    def template_folder(self, teacher_tokenizer: Path) -> Path:
        """The served model is not on this machine: its prompts follow the teacher tokenizer's folder."""
        return teacher_tokenizer.parent

    def devices(self, workers: int) -> int:
        """One accelerator per server (a server of several GPUs counts as one); with a servers file, those listed now."""
        if self.config.openai.base_urls_file:
            return max(len(ServersFile(self.config.openai.base_urls_file).read()), 1)
        return len(self.config.openai.base_urls)

    def setup(self) -> None:
        """Start the event loop, open the session, and check every server answers and serves the model."""
        if self._loop is not None:
            return
        file = self.config.openai.base_urls_file
        self.servers_file = ServersFile(file) if file else None
        self.router = Router(self.servers_file.read() if file else self.config.openai.base_urls)
        self._session: aiohttp.ClientSession | None = None
        self._follow: asyncio.Future | None = None  # the task following the servers file
        self._logged_at = time.monotonic()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tpt-openai", daemon=True)
        self._thread.start()
        try:
            self._call(self._open())
        except BaseException:
            self.close()
            raise

    def check(self) -> None:
        """Every server answers and serves the model."""
        self.setup()
        self.close()

    def submit(self, requests: list[Request], on_done: OnDone) -> None:
        self.setup()
        self._loop.call_soon_threadsafe(self._start, requests, on_done)

    def close(self) -> None:
        """Close the session and stop the loop's thread (requests still in flight are abandoned)."""
        if self._loop is None:
            return
        if self._follow is not None:
            self._loop.call_soon_threadsafe(self._follow.cancel)
        if self._session is not None:
            self._call(self._session.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._loop = None

    def _call(self, coroutine):
        """Run a coroutine on the backend's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _open(self) -> None:
        key = os.environ.get(self.config.openai.api_key_env) if self.config.openai.api_key_env else None
        self._slots = asyncio.Semaphore(self.config.max_in_flight)  # this process's requests in flight, over all callers
        self._tasks: set[asyncio.Task] = set()
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {key}"} if key else {},
            timeout=aiohttp.ClientTimeout(total=self.config.openai.timeout),
            connector=aiohttp.TCPConnector(limit=self.config.max_in_flight),
        )
        await self._preflight()
        if self.servers_file is not None:
            self._follow = asyncio.ensure_future(self.servers_file.follow(self.router))

    async def _preflight(self) -> None:
        """Fail at once, naming the URL, when a server is unreachable or does not serve `model`."""
        for server in self.router.servers:
            try:
                async with self._session.get(f"{server.url}/models", timeout=aiohttp.ClientTimeout(total=PREFLIGHT_TIMEOUT)) as response:
                    if response.status != 200:
                        continue  # some servers (transformers serve) have no usable model list
                    served = [m.get("id") for m in (await response.json(content_type=None)).get("data", [])]
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
                if self.servers_file is not None:  # servers come and go: a listed one that is gone is set aside
                    progress_log.warning("openai: %s, listed in %s, does not answer (%s: %s)", server.url,
                                         self.servers_file.location, type(error).__name__, error)
                    continue
                raise ConnectionError(f"generate.openai.base_urls: no OpenAI-compatible server answers at {server.url} "
                                      f"({type(error).__name__}: {error})") from None
            if served and self.config.model not in served:
                raise ValueError(f"generate.model: the server at {server.url} does not serve {self.config.model!r}; it serves {served}")

    def _start(self, requests: list[Request], on_done: OnDone) -> None:
        for request in requests:
            task = self._loop.create_task(self._one(request, on_done))
            self._tasks.add(task)  # the loop keeps only weak references to its tasks
            task.add_done_callback(self._tasks.discard)

    async def _one(self, request: Request, on_done: OnDone) -> None:
        async with self._slots:
            try:
                completion = await self._with_retries(request)
            except Exception as error:  # a bug, but the caller waits for every request: it fails with the reason
                progress_log.exception("openai: request %s failed unexpectedly", request.id)
                completion = failed(request, f"openai: unexpected {type(error).__name__}: {error}")
        self.failed += completion.finish_reason == "error"
        on_done(completion)
        if time.monotonic() - self._logged_at >= LOG_INTERVAL:
            self._logged_at = time.monotonic()
            progress_log.info("openai: %d in flight, %d retries, %d failed | %s",
                              len(self._tasks), self.retried, self.failed, self.router.line())

    async def _with_retries(self, request: Request) -> Completion:
        chat = request.messages is not None
        body = request_body(self.config, request)
        failed_at = []
        for attempt in itertools.count():
            try:  # a server that failed this request before only if no other is usable: its retries go elsewhere
                server = await self.router.next(avoid=failed_at, wait=self.config.openai.timeout)
            except NoServer as error:  # servers that come and go, and none came
                completion = failed(request, f"generate.openai.base_urls_file {self.config.openai.base_urls_file}: {error}", attempt)
                completion.failed_at = failed_at
                return completion
            url = f"{server.url}/{'chat/completions' if chat else 'completions'}"
            try:
                completion = await self._post(url, body, request.id, chat)
            except PermanentError as error:
                self.router.answered(server)
                completion = failed(request, str(error))
            except RetryableError as error:
                self.router.failed(server)
                failed_at.append(server.url)
                if attempt < self.config.openai.retries:
                    self.retried += 1
                    await asyncio.sleep(error.retry_after if error.retry_after is not None else backoff(attempt))
                    continue
                completion = failed(request, f"gave up after {attempt} retries: {error}")
            else:
                self.router.answered(server, completion.output_tokens)
            completion.retries, completion.server, completion.failed_at = attempt, server.url, failed_at
            return completion

    async def _post(self, url: str, body: dict, request_id: str, chat: bool) -> Completion:
        try:
            async with self._session.post(url, json=body) as response:
                if response.status == 429 or response.status >= 500:
                    raise RetryableError(f"HTTP {response.status} from {url}: {(await response.text())[:200]}",
                                         retry_after(response.headers.get("Retry-After")))
                if response.status >= 400:
                    raise PermanentError(f"HTTP {response.status} from {url}: {(await response.text())[:500]}")
                if response.content_type == "text/event-stream":
                    chunks = [json.loads(line[5:]) async for line in _sse_data(response)]
                else:
                    chunks = [await response.json(content_type=None)]
        except asyncio.TimeoutError:
            raise RetryableError(f"no complete answer from {url} within {self.config.openai.timeout:g} s") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
            raise RetryableError(f"connection to {url} failed: {type(error).__name__}: {error}") from None
        except (ValueError, json.JSONDecodeError) as error:
            raise PermanentError(f"{url} answered something that is not JSON: {error}") from None
        try:
            return _completion(request_id, chunks, chat, url)
        except (AttributeError, TypeError) as error:  # JSON of another shape: failed with the reason, never a task that dies unheard
            raise PermanentError(f"{url} answered something that is not a completion: {type(error).__name__}: {error}") from None


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
    reasoning, text, reason, usage, answered = [], [], None, {}, False
    for chunk in chunks:
        choices = chunk.get("choices")
        if choices is None:
            raise PermanentError(f"{url} answered without choices: {json.dumps(chunk)[:300]}")
        for choice in choices[:1]:  # a stream's usage-only chunk has none
            part = choice.get("message", choice.get("delta")) if chat else choice
            if not isinstance(part, dict) or not chat and "text" not in part:
                raise PermanentError(f"{url} answered a choice without {'a message' if chat else 'text'}: {json.dumps(chunk)[:300]}")
            answered = True
            # reasoning servers (vLLM/SGLang reasoning parsers) return the thinking apart from the content
            reasoning.append(part.get("reasoning_content") or part.get("reasoning") or "")
            text.append(part.get("content") or part.get("text") or "")
            reason = choice.get("finish_reason") or reason
        usage = chunk.get("usage") or usage
    if not answered:  # never an empty completion: nothing was generated
        raise PermanentError(f"{url} answered without a choice: {json.dumps(chunks[-1])[:300] if chunks else 'no data'}")
    thinking, answer = "".join(reasoning), "".join(text)
    return Completion(
        request_id,
        # a reasoning parser took out the `</think>` before the answer: put back, the answer is cut as from any server
        f"{thinking}</think>{answer}" if thinking and answer else thinking or answer,
        reason if reason in ("stop", "length") else "unknown",  # a missing reason is never taken for "stop"
        prompt_tokens=usage.get("prompt_tokens", 0),
        output_tokens=usage.get("completion_tokens", 0),
    )


def request_body(config: GenerateConfig, request: Request) -> dict:
    """The JSON body posted for `request`: /v1/chat/completions for a conversation, /v1/completions for a prompt."""
    body = {
        "model": config.model,
        "max_tokens": request.budget(config.max_new_tokens),
        "temperature": config.temperature,
        "top_p": config.top_p,
        "seed": request_seed(config.seed, request.id),
        "stream": False,
    }
    if config.stop:
        body["stop"] = list(config.stop)
    if request.messages is not None:
        body["messages"] = list(request.messages)
    else:
        body["prompt"] = request.prompt
    return body


def retry_after(header: str | None) -> float | None:
    """The seconds of a Retry-After header given in seconds (an HTTP date is left to the backoff), capped."""
    try:
        return min(max(float(header), 0.0), BACKOFF_CAP_SECONDS) if header else None
    except ValueError:
        return None


def backoff(attempt: int) -> float:
    """Seconds before retry `attempt + 1`: exponential, capped, with full jitter so clients do not retry in step."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2**attempt))
