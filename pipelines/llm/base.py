"""The one LLM interface.

A backend implements ``load``, ``agenerate`` (one chat completion) and ``stream``; the batch
fan-out (``agenerate_batch``), the sync wrappers and the error contract are written once here.
Errors reaching callers are always ``core.errors.BackendError`` subclasses. In a batch, a
failed item comes back as its error in place of a ``Generation`` so one bad item never fails
the batch.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Iterator, TypeVar

from core.errors import BackendError

Messages = list[dict[str, str]]
T = TypeVar("T")


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings; recorded with every output so results are reproducible."""

    temperature: float = field(default=0.7, metadata={"help": "0 = greedy; higher = more varied (0 to 2)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (0 < top_p <= 1)."})
    max_tokens: int = field(default=256, metadata={"help": "Most new tokens to generate (1 to 32768)."})
    seed: int | None = field(default=None, metadata={"help": "Random seed; empty = not fixed."})
    stop: tuple[str, ...] | None = field(default=None, metadata={"help": "Strings that end generation."})

    def __post_init__(self):
        from core.errors import BadInput

        if not 0 <= self.temperature <= 2:
            raise BadInput(f"temperature={self.temperature} is out of range.", hint="Use a value from 0 to 2.")
        if not 0 < self.top_p <= 1:
            raise BadInput(f"top_p={self.top_p} is out of range.", hint="Use a value above 0 and at most 1.")
        if not 1 <= self.max_tokens <= 32768:
            raise BadInput(f"max_tokens={self.max_tokens} is out of range.", hint="Use 1 to 32768.")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stop"] = list(self.stop) if self.stop else None
        return out


@dataclass
class Generation:
    text: str
    model: str
    backend: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    finish_reason: str | None = None
    cached: bool = False
    cache_key: str | None = None
    call_id: str | None = None  # the cost-ledger row of this call, when a ledger records it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LLMBackend(ABC):
    """One model behind one backend. ``name`` identifies it in ledgers and lineage."""

    backend: str = "base"
    # Called with each finished item of a batch (a Generation or a BackendError) as it finishes, so a
    # long batch shows progress before it ends; set by whoever runs the batch, None by default.
    on_result: Callable[[Any], None] | None = None

    def __init__(self, model: str):
        self.model = model

    def _report(self, result: Any) -> Any:
        if self.on_result is not None:
            self.on_result(result)
        return result

    async def _reported(self, call: Awaitable[Generation]) -> Generation:
        """``await call``, telling ``on_result`` about its outcome, a BackendError included."""
        try:
            return self._report(await call)
        except BackendError as exc:
            self._report(exc)
            raise

    def load(self) -> None:
        """Import optional libraries and load weights / check the endpoint. Idempotent."""

    @abstractmethod
    async def agenerate(self, messages: Messages, params: SamplingParams | None = None) -> Generation:
        """One chat completion; raises BackendError."""

    @abstractmethod
    def stream(self, messages: Messages, params: SamplingParams | None = None) -> Iterator[str]:
        """Yield text pieces as they are generated; raises BackendError."""

    def count_tokens(self, text: str) -> int:
        """Token count for budgeting; backends with a tokenizer override this."""
        return max(1, len(text) // 4)

    async def agenerate_batch(
        self, batch: list[Messages], params: SamplingParams | None = None
    ) -> list[Generation | BackendError]:
        """All items of a batch; concurrency is the backend's business (semaphore, padding)."""
        results = await asyncio.gather(*(self._reported(self.agenerate(m, params)) for m in batch),
                                       return_exceptions=True)
        out: list[Generation | BackendError] = []
        for item in results:
            if isinstance(item, BaseException) and not isinstance(item, BackendError):
                raise item
            out.append(item)
        return out

    def generate(self, messages: Messages, params: SamplingParams | None = None) -> Generation:
        return run_sync(self.agenerate(messages, params))

    def generate_batch(
        self, batch: list[Messages], params: SamplingParams | None = None
    ) -> list[Generation | BackendError]:
        return run_sync(self.agenerate_batch(batch, params))

    def close(self) -> None:
        """Release clients and weights."""


def run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine from sync code, also when the caller already has a running loop
    (Streamlit, Jupyter): then it runs on a helper thread with its own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def runner():
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
