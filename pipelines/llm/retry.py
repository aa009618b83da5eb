"""One retry policy for every remote LLM call (tenacity).

Why here and not in the HTTP client: the studio decides, for every endpoint alike, what is
worth retrying (``BackendError.retryable``: 429, 5xx, timeouts, lost connections; never 400,
401, 403, 404), how long to wait (the server's Retry-After when it sends one, else exponential
backoff with full jitter) and when to stop (``max_retries`` extra attempts, waits capped).
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any, Mapping

from tenacity import RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from core.errors import BackendError


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, BackendError) and exc.retryable


def retry_after_s(headers: Mapping[str, str] | Any) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, or ``Retry-After`` as seconds
    or an HTTP date; None when absent or unreadable."""
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` extra attempts; backoff ``base_s * 2**n`` with full jitter, capped at
    ``max_wait_s``; a ``retry_after`` attribute on the error (seconds) overrides the backoff."""

    max_retries: int = 5
    base_s: float = 0.5
    max_wait_s: float = 30.0

    def wait(self, retry_state: RetryCallState) -> float:
        after = getattr(retry_state.outcome.exception(), "retry_after", None) if retry_state.outcome else None
        if after is not None:
            return min(float(after), self.max_wait_s)
        return wait_random_exponential(multiplier=self.base_s, max=self.max_wait_s)(retry_state)

    def tenacity_kwargs(self) -> dict[str, Any]:
        """Arguments for ``tenacity.Retrying`` / ``AsyncRetrying``; the last error is re-raised."""
        return dict(stop=stop_after_attempt(max(0, self.max_retries) + 1), wait=self.wait,
                    retry=retry_if_exception(is_retryable), reraise=True)
