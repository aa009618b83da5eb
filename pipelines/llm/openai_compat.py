"""Backend for any OpenAI-compatible chat-completions endpoint (the embedded llama.cpp server,
vLLM, OpenAI, Together, ...).

Why it does its own retries: the ``openai`` client's built-in retries are switched off so that
one policy (tenacity: exponential backoff with full jitter, Retry-After honoured, a cap, only
429/5xx/timeouts/connection errors) governs every endpoint, and so that each attempt goes through
the concurrency semaphore. Every failure reaches callers as a ``core.errors.BackendError``
whose message never contains the API key. Each call is checked against the response cache
first and recorded in the call ledger (tokens, latency, cost, cached flag).
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from dataclasses import replace
from typing import Any, Awaitable, Iterator, TypeVar

import openai
from tenacity import AsyncRetrying, Retrying

from pipelines.llm.base import Generation, LLMBackend, Messages, SamplingParams, run_sync
from pipelines.llm.cache import CallLedger, ResponseCache, cache_key, monotonic_ms
from pipelines.llm.pricing import PriceTable
from pipelines.llm.retry import RetryPolicy, retry_after_s
from storage.registry import EndpointRecord
from core.errors import (AuthenticationFailed, BackendError, BackendTimeout, BadResponse, EndpointUnreachable,
                           RateLimited, ServerFailed)
from core.secrets import redact, resolve_api_key

try:  # the HTTP library under the openai client (httpx2 in openai 3.x, httpx before)
    import httpx2 as _http
except ImportError:  # pragma: no cover - older openai
    import httpx as _http

T = TypeVar("T")
NO_KEY = "not-needed"  # local servers ignore the key, but the client insists on one
UP_HINT = "Is the server running? `python -m studio up` starts the embedded one."


class OpenAICompatibleBackend(LLMBackend):
    backend = "openai"

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, *, concurrency: int = 8,
        timeout_s: float = 60.0, max_retries: int = 5, cache: ResponseCache | None = None,
        ledger: CallLedger | None = None, prices: PriceTable | None = None, endpoint_id: str | None = None,
        endpoint_name: str | None = None, api_key_env: str | None = None, retry_base_s: float = 0.5,
        retry_max_wait_s: float = 30.0,
    ):
        super().__init__(model)
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or NO_KEY
        self.concurrency = max(1, int(concurrency))
        self.timeout_s = timeout_s
        self.max_retries = max(0, int(max_retries))
        self.cache, self.ledger, self.prices = cache, ledger, prices
        self.endpoint_id, self.endpoint_name, self.api_key_env = endpoint_id, endpoint_name, api_key_env
        self.retry = RetryPolicy(self.max_retries, retry_base_s, retry_max_wait_s)
        self._owned: list[ResponseCache | CallLedger] = []
        self._per_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._sync_client: openai.OpenAI | None = None

    @classmethod
    def from_endpoint(cls, record: EndpointRecord, db=None, *, job_id: str | None = None,
                      stage: str | None = None) -> "OpenAICompatibleBackend":
        """Build from a registry row; with ``db`` it also gets the cache, ledger and prices."""
        key = resolve_api_key(record.api_key_env, record.api_key_secret)
        if key is None and (record.api_key_env or record.api_key_secret):
            raise AuthenticationFailed(
                f"No API key found for endpoint {record.name!r}.",
                hint=cls._key_hint(record.api_key_env, record.name),
            )
        backend = cls(record.base_url, record.model, key, concurrency=record.concurrency,
                      timeout_s=record.timeout_s, max_retries=record.max_retries, endpoint_id=record.id or None,
                      api_key_env=record.api_key_env, endpoint_name=record.name)
        if db is not None:
            backend.cache, backend.ledger = ResponseCache(db), CallLedger(db, job_id=job_id, stage=stage)
            backend.prices = PriceTable.load(db)
            backend._owned = [backend.cache, backend.ledger]
        return backend

    # -- errors ------------------------------------------------------------------------------
    @staticmethod
    def _key_hint(env: str | None, endpoint: str | None = None) -> str:
        where = f"set {env} to a valid key" if env else "give the endpoint a valid key"
        name = endpoint or "NAME"
        return (f"Check the key: {where}, or store one on the Models page or with `python -m studio endpoints "
                f"remove {name}` then `python -m studio endpoints add {name} URL MODEL --ask-key`.")

    def _error(self, cls: type[BackendError], message: str, hint: str | None = None, **attrs) -> BackendError:
        err = cls(redact(message, [self._api_key]), hint=redact(hint, [self._api_key]) if hint else None)
        for name, value in attrs.items():
            setattr(err, name, value)
        return err

    @staticmethod
    def _detail(exc: openai.APIStatusError) -> str:
        body = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else exc.body
        body = body.get("message", body) if isinstance(body, dict) else body
        return str(body if body is not None else exc.message)[:300]

    def _map_error(self, exc: openai.OpenAIError) -> BackendError:
        url = self.base_url
        if isinstance(exc, openai.APITimeoutError):
            return self._error(BackendTimeout, f"{url} did not answer within {self.timeout_s:g} s (model {self.model}).",
                               "Raise the endpoint's timeout, lower its concurrency or max_tokens.")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return self._error(EndpointUnreachable, f"cannot reach {url}: {type(cause).__name__}: {cause}.", UP_HINT)
        if not isinstance(exc, openai.APIStatusError):
            return self._error(BadResponse, f"{url} answered with something unexpected: {exc}.")
        code, detail = exc.status_code, self._detail(exc)
        if code in (401, 403):
            return self._error(AuthenticationFailed, f"the endpoint {url} rejected the API key (HTTP {code}): {detail}",
                               self._key_hint(self.api_key_env, self.endpoint_name))
        if code == 429:
            return self._error(RateLimited, f"{url} is rate-limiting requests (HTTP 429): {detail}",
                               "Lower the endpoint's concurrency or wait a while.",
                               retry_after=retry_after_s(exc.response.headers))
        if code >= 500:
            return self._error(ServerFailed, f"{url} failed with HTTP {code}: {detail}",
                               "The server had a problem; check its log.")
        if code == 408:
            return self._error(BackendTimeout, f"{url} timed out the request (HTTP 408): {detail}")
        hint = (f"Check the model name ({self.model}) and that the base URL ends with /v1." if code == 404
                else "Check the sampling parameters and the prompt size for this model.")
        return self._error(BackendError, f"{url} refused the request (HTTP {code}): {detail}", hint)

    # -- one attempt, retried --------------------------------------------------------------------
    def _loop_state(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        """Async clients and semaphores belong to one event loop (``generate`` runs a new one
        per call), so each loop gets its own pair."""
        loop = asyncio.get_running_loop()
        state = self._per_loop.get(loop)
        if state is None:
            # A plain client (not the SDK's default wrapper, whose __del__ schedules a close on
            # whatever loop runs at GC time, long after this loop is gone).
            client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, timeout=self.timeout_s,
                                        max_retries=0, http_client=openai.DefaultAsyncHttpxClient())
            state = self._per_loop[loop] = (client, asyncio.Semaphore(self.concurrency))
        return state

    def _request(self, messages: Messages, params: SamplingParams) -> dict[str, Any]:
        optional = {"seed": params.seed, "stop": list(params.stop) if params.stop else None}
        return {"model": self.model, "messages": messages, "temperature": params.temperature, "top_p": params.top_p,
                "max_tokens": params.max_tokens, **{k: v for k, v in optional.items() if v is not None}}

    def _gave_up(self, exc: BackendError, attempts: int) -> BackendError:
        if attempts <= 1 or not exc.retryable:
            return exc
        return self._error(type(exc), f"{exc.message} (gave up after {attempts} attempts)", exc.hint)

    async def _attempt(self, messages: Messages, params: SamplingParams, tries: list[int]) -> dict[str, Any]:
        client, semaphore = self._loop_state()
        tries[0] += 1
        async with semaphore:
            try:
                # The SDK's generic ``post`` (its documented way to call any route): same auth,
                # headers and status errors as ``chat.completions.create`` without its per-call
                # request transformation (~1 ms of CPU); we decode and validate the body ourselves.
                response = await client.post("/chat/completions", body=self._request(messages, params),
                                             cast_to=_http.Response)
            except openai.OpenAIError as exc:
                raise self._map_error(exc) from None
        return self._decode(response.content)

    def _decode(self, content: bytes) -> dict[str, Any]:
        try:
            body = json.loads(content)
        except ValueError:
            raise self._error(BadResponse, f"{self.base_url} answered with something that is not JSON: "
                              f"{content[:80]!r}", "Check that the base URL points at an OpenAI-compatible "
                              "API (it usually ends with /v1).") from None
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._error(BadResponse, f"{self.base_url} answered without any choices: {str(body)[:200]}",
                              "Check that the endpoint serves chat completions for this model.")
        content_text = (choices[0].get("message") or {}).get("content")
        if content_text is not None and not isinstance(content_text, str):
            raise self._error(BadResponse, f"{self.base_url} answered with a non-text message: {content_text!r:.200}")
        return body

    # -- the public calls ------------------------------------------------------------------------------
    def _generation(self, body: dict[str, Any], messages: Messages, start: float) -> Generation:
        choice = body["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        usage = body.get("usage") or {}   # servers that leave it out get an estimate
        prompt_tokens = usage.get("prompt_tokens")
        if prompt_tokens is None:
            prompt_tokens = self.count_tokens(" ".join(str(m.get("content", "")) for m in messages))
        completion_tokens = usage.get("completion_tokens", self.count_tokens(text) if text else 0)
        cost = self.prices.cost_usd(self.model, prompt_tokens, completion_tokens) if self.prices else 0.0
        return Generation(text=text, model=self.model, backend=self.backend, prompt_tokens=prompt_tokens,
                          completion_tokens=completion_tokens, latency_s=time.perf_counter() - start,
                          cost_usd=cost, finish_reason=choice.get("finish_reason"))

    def _record(self, gen: Generation | None, key: str | None, start: float, error: BackendError | None = None):
        if self.ledger is None:
            return
        call_id = self.ledger.record(
            backend=self.backend, endpoint_id=self.endpoint_id, model=self.model, cache_key=key,
            cached=bool(gen and gen.cached), prompt_tokens=gen.prompt_tokens if gen else None,
            completion_tokens=gen.completion_tokens if gen else None, latency_ms=monotonic_ms(start),
            cost_usd=gen.cost_usd if gen else 0.0, status="error" if error else "ok",
            error=str(error) if error else None,
        )
        if gen is not None:
            gen.call_id = call_id  # lineage: instructions and judgments name the call that made them

    async def _complete(self, messages: Messages, params: SamplingParams, key: str | None,
                        hit: Generation | None) -> Generation:
        start = time.perf_counter()
        if hit is not None:
            gen = replace(hit, backend=self.backend, cost_usd=0.0, latency_s=time.perf_counter() - start)
            self._record(gen, key, start)
            return gen
        tries = [0]
        try:
            try:
                body = await AsyncRetrying(**self.retry.tenacity_kwargs())(self._attempt, messages, params, tries)
            except BackendError as exc:
                raise self._gave_up(exc, tries[0]) from None
            gen = self._generation(body, messages, start)
        except BackendError as exc:
            self._record(None, key, start, exc)
            raise
        gen.cache_key = key
        if self.cache is not None and key is not None:
            self.cache.put(key, gen, {"model": self.model, "messages": messages, "params": params.to_dict()})
        self._record(gen, key, start)
        return gen

    async def agenerate(self, messages: Messages, params: SamplingParams | None = None) -> Generation:
        params = params or SamplingParams()
        key = cache_key(self.model, messages, params) if self.cache is not None else None
        hit = await asyncio.to_thread(self.cache.get, key) if key is not None else None
        return await self._complete(messages, params, key, hit)

    async def agenerate_batch(self, batch: list[Messages], params: SamplingParams | None = None
                              ) -> list[Generation | BackendError]:
        """Checks the cache once for the whole batch, then fans out under the semaphore."""
        params = params or SamplingParams()
        keys = [cache_key(self.model, m, params) if self.cache is not None else None for m in batch]
        hits = await asyncio.to_thread(self.cache.get_many, keys) if self.cache is not None else {}
        results = await asyncio.gather(*(self._reported(self._complete(m, params, k, hits.get(k)))
                                         for m, k in zip(batch, keys)), return_exceptions=True)
        for item in results:
            if isinstance(item, BaseException) and not isinstance(item, BackendError):
                raise item
        return list(results)

    def stream(self, messages: Messages, params: SamplingParams | None = None) -> Iterator[str]:
        """Text pieces as they arrive (for "try a prompt"); opening the stream is retried."""
        params = params or SamplingParams()
        if self._sync_client is None:
            self._sync_client = openai.OpenAI(base_url=self.base_url, api_key=self._api_key,
                                              timeout=self.timeout_s, max_retries=0)
        start, pieces = time.perf_counter(), []

        def open_stream():
            try:
                return self._sync_client.chat.completions.create(**self._request(messages, params), stream=True)
            except openai.OpenAIError as exc:
                raise self._map_error(exc) from None

        try:
            chunks = Retrying(**self.retry.tenacity_kwargs())(open_stream)
            finish = None
            try:
                for chunk in chunks:
                    choice = chunk.choices[0] if chunk.choices else None
                    if choice is not None and choice.delta and choice.delta.content:
                        pieces.append(choice.delta.content)
                        yield choice.delta.content
                    finish = (choice.finish_reason if choice else None) or finish
            except openai.OpenAIError as exc:
                raise self._map_error(exc) from None
            except _http.HTTPError as exc:  # the connection broke mid-stream
                raise self._error(EndpointUnreachable, f"lost the connection to {self.base_url} mid-stream: "
                                  f"{type(exc).__name__}: {exc}.", UP_HINT) from None
        except BackendError as exc:
            self._record(None, None, start, exc)
            raise
        body = {"choices": [{"message": {"content": "".join(pieces)}, "finish_reason": finish}]}  # no usage: estimated
        self._record(self._generation(body, messages, start), None, start)

    async def aclose(self) -> None:
        """Close this event loop's HTTP client (call it before a long-lived loop ends)."""
        state = self._per_loop.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state[0].close()

    async def _then_aclose(self, work: Awaitable[T]) -> T:
        try:
            return await work
        finally:
            await self.aclose()

    def generate(self, messages: Messages, params: SamplingParams | None = None) -> Generation:
        return run_sync(self._then_aclose(self.agenerate(messages, params)))

    def generate_batch(self, batch: list[Messages], params: SamplingParams | None = None
                       ) -> list[Generation | BackendError]:
        return run_sync(self._then_aclose(self.agenerate_batch(batch, params)))

    def flush(self) -> None:
        """Write buffered cache and ledger rows now (e.g. at the end of a stage)."""
        for sink in (self.cache, self.ledger):
            if sink is not None:
                sink.flush()

    def close(self) -> None:
        self.flush()
        for sink in self._owned:  # the cache and ledger ``from_endpoint`` made
            sink.close()
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None
        self._per_loop.clear()
