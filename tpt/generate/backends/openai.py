"""An asyncio client for any OpenAI-compatible server (vllm serve, SGLang, TGI, transformers serve, llama.cpp).

At most `max_in_flight` requests at once per process, each sent to the server
of `base_urls` (or of `base_urls_file`, followed while the run goes on) with
the fewest outstanding (tpt.generate.routing); each has a
timeout and is retried, on the least busy working server, with exponential
backoff and full jitter on 5xx, timeouts and dropped connections, and after
the wait a 429's Retry-After asks for. Other HTTP errors (an unknown
model, a prompt over the context) are permanent: no retry, the reason is kept.
The API key comes from the environment variable the config names and is never
logged; credentials in a URL are sent, and shown or stored redacted
(tpt.redact). Answers may be JSON or server-sent events (some servers stream
even when asked not to). No answer is trusted (tpt.generate.answers): each is
read up to a byte cap from its budget, its text's invalid code points replaced,
its token counts kept only when they are counts; any other shape is a
permanent error with the reason.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import random
import threading
import time
import traceback
from pathlib import Path

import aiohttp

from tpt.config import GenerateConfig
from tpt.generate.answers import answer_bytes
from tpt.generate.backend import Backend
from tpt.generate.backends.openai_answers import Answer, PermanentError, read_at_most, read_events, read_json, reason_of, served_models
from tpt.generate.routing import NoServer, Router, ServersFile
from tpt.generate.types import Completion, OnDone, Request, failed, request_seed
from tpt.redact import redact

log = logging.getLogger("tpt.progress.openai")  # progress lines: to stderr in every worker, as the stage's (tpt.progress)
BACKOFF_SECONDS = 0.5  # the first retry waits up to this; each later one doubles it
BACKOFF_CAP_SECONDS = 30.0
PREFLIGHT_TIMEOUT = 30.0
LOG_INTERVAL = 10.0
MODELS_BYTES = 1024 * 1024  # of a /models answer, read at most
TEMPLATE_TOKENS = 1024  # a chat template's own tokens: a prompt has at most its bytes in tokens, plus these


class RetryableError(Exception):
    """A failure worth retrying: 429, 5xx, a timeout, a dropped connection."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after  # seconds the server asked for (Retry-After); None: back off


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
        """Fail at once, naming the URL, when a server is unreachable, answers no model list, or does not serve `model`."""
        for server in self.router.servers:
            shown = server.shown
            try:
                async with self._session.get(f"{server.url}/models", timeout=aiohttp.ClientTimeout(total=PREFLIGHT_TIMEOUT)) as response:
                    if response.status != 200:
                        continue  # some servers (transformers serve) have no usable model list
                    answer, _ = await read_at_most(response.content, MODELS_BYTES)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
                if self.servers_file is not None:  # servers come and go: a listed one that is gone is set aside
                    log.warning("openai: %s, listed in %s, does not answer (%s: %s)", shown,
                                         self.servers_file.location, type(error).__name__, redact(str(error)))
                    continue
                raise ConnectionError(f"generate.openai.base_urls: no OpenAI-compatible server answers at {shown} "
                                      f"({type(error).__name__}: {redact(str(error))})") from None
            served = served_models(answer)
            if served is None:
                raise ValueError(f"generate.openai.base_urls: the server at {shown} answered /models with something that is "
                                 f"not a model list: {answer[:100].decode('utf-8', 'replace')!r}")
            if served and self.config.model not in served:
                raise ValueError(f"generate.model: the server at {shown} does not serve {self.config.model!r}; it serves {served}")

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
                log.error("openai: request %s failed unexpectedly\n%s", request.id, redact(traceback.format_exc()))
                completion = failed(request, redact(f"openai: unexpected {type(error).__name__}: {error}"))
        self.failed += completion.finish_reason == "error"
        on_done(completion)
        if time.monotonic() - self._logged_at >= LOG_INTERVAL:
            self._logged_at = time.monotonic()
            log.info("openai: %d in flight, %d retries, %d failed | %s",
                              len(self._tasks), self.retried, self.failed, self.router.line())

    async def _with_retries(self, request: Request) -> Completion:
        endpoint = "chat/completions" if request.messages is not None else "completions"
        body = request_body(self.config, request)
        failed_at, tried = [], []  # the servers this request failed at: as shown, and as the router knows them
        for attempt in itertools.count():
            try:  # a server that failed this request before only if no other is usable: its retries go elsewhere
                server = await self.router.next(avoid=tried, wait=self.config.openai.timeout)
            except NoServer as error:  # servers that come and go, and none came
                completion = failed(request, f"generate.openai.base_urls_file {self.config.openai.base_urls_file}: {error}", attempt)
                completion.failed_at = failed_at
                return completion
            shown = server.shown
            try:
                completion = await self._post(f"{server.url}/{endpoint}", f"{shown}/{endpoint}", body, request)
            except PermanentError as error:
                self.router.answered(server)
                completion = failed(request, redact(str(error)))
            except RetryableError as error:
                self.router.failed(server)
                failed_at.append(shown)
                tried.append(server.url)
                if attempt < self.config.openai.retries:
                    self.retried += 1
                    await asyncio.sleep(error.retry_after if error.retry_after is not None else backoff(attempt))
                    continue
                completion = failed(request, redact(f"gave up after {attempt} retries: {error}"))
            else:
                self.router.answered(server, completion.output_tokens)
            completion.retries, completion.server, completion.failed_at = attempt, shown, failed_at
            return completion

    async def _post(self, url: str, shown: str, body: dict, request: Request) -> Completion:
        """Post `body` to `url` (`shown` in messages: without credentials) and read the answer, at most its byte cap."""
        answer = Answer(shown, request.messages is not None, answer_bytes(body["max_tokens"]))
        try:
            async with self._session.post(url, json=body) as response:
                if response.status == 429 or response.status >= 500:
                    raise RetryableError(f"HTTP {response.status} from {shown}: {await reason_of(response)}",
                                         retry_after(response.headers.get("Retry-After")))
                if response.status >= 400:
                    raise PermanentError(f"HTTP {response.status} from {shown}: {await reason_of(response)}")
                if response.content_type == "text/event-stream":
                    await read_events(response.content, answer)
                else:
                    await read_json(response.content, answer)
                if answer.over_budget:
                    response.close()  # the rest is never read
        except asyncio.TimeoutError:
            raise RetryableError(f"no complete answer from {shown} within {self.config.openai.timeout:g} s") from None
        except aiohttp.ClientError as error:  # a dropped connection, a body cut short, an answer that is not HTTP
            raise RetryableError(f"connection to {shown} failed: {type(error).__name__}: {error}") from None
        except ValueError as error:  # a request aiohttp refuses to send (credentials in the URL and an API key both)
            raise PermanentError(f"no request could be sent to {shown}: {error}") from None
        asked = body.get("messages", body.get("prompt"))
        return answer.completion(request.id, body["max_tokens"], len(json.dumps(asked)) + TEMPLATE_TOKENS)


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
    """The seconds of a Retry-After header given in seconds (an HTTP date, or a number that is none, is left to the
    backoff), capped."""
    try:
        seconds = float(header) if header else math.nan
    except ValueError:
        return None
    return min(max(seconds, 0.0), BACKOFF_CAP_SECONDS) if math.isfinite(seconds) else None


def backoff(attempt: int) -> float:
    """Seconds before retry `attempt + 1`: exponential, capped, with full jitter so clients do not retry in step."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2**attempt))
