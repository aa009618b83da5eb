"""A small Argilla 2.8 REST client (httpx) with the studio's errors.

Why not the SDK: the SDK turns every record into pydantic objects and back, and building its
settings objects contacts the default server; the studio already has plain dicts, so it speaks the
REST API (``/api/v1``) directly. Every failure becomes a ``ReviewError`` that says what to do:
the server is down (and how far the push or pull got), the key is refused, a dataset is gone.
Transient failures (connection lost, 5xx, timeouts) are retried a few times with backoff first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from core.errors import ReviewError

log = logging.getLogger(__name__)

PAGE_LIMIT = 1000        # the server's maximum page size for listing records
BULK_LIMIT = 500         # the server's maximum records per bulk upsert
TIMEOUT_S = 60.0


class ArgillaUnavailable(ReviewError):
    """Argilla did not answer (stopped, restarting, wrong URL) or kept failing with 5xx."""

    retryable = True


class ArgillaAuthError(ReviewError):
    """401/403: the API key is wrong or lacks the rights."""


class ArgillaNotFound(ReviewError):
    """404: the dataset (or record) is gone from Argilla."""


@dataclass(frozen=True)
class ArgillaUser:
    id: str
    username: str
    role: str


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ArgillaUnavailable)


class ArgillaClient:
    """One HTTP connection pool to one Argilla server; use as a context manager or call close()."""

    def __init__(self, url: str, api_key: str, *, retries: int = 3, timeout_s: float = TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.retries = retries
        self._http = httpx.Client(base_url=self.url, headers={"X-Argilla-Api-Key": api_key},
                                  timeout=timeout_s, transport=transport)

    def __enter__(self) -> "ArgillaClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:  # never the key
        return f"ArgillaClient({self.url!r})"

    # -- transport ------------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, what: str, **kwargs) -> Any:
        """Send one request, retrying transient failures; returns the decoded JSON (or None)."""
        retrying = Retrying(stop=stop_after_attempt(self.retries + 1), reraise=True,
                            wait=wait_random_exponential(multiplier=0.3, max=3.0), retry=retry_if_exception(_retryable))
        return retrying(self._once, method, path, what, **kwargs)

    def _once(self, method: str, path: str, what: str, **kwargs) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ArgillaUnavailable(f"Argilla at {self.url} timed out while {what}.",
                                     hint="Check that it is running (`python -m studio status`), then retry.") from None
        except httpx.TransportError as exc:
            raise ArgillaUnavailable(f"Argilla at {self.url} is not answering while {what} ({type(exc).__name__}).",
                                     hint="Start it with `python -m studio up` (or check STUDIO_ARGILLA_URL), "
                                          "then retry.") from None
        if response.status_code in (401, 403):
            raise ArgillaAuthError(f"Argilla at {self.url} refused the API key while {what} "
                                   f"(HTTP {response.status_code}).",
                                   hint="Set ARGILLA_API_KEY to a valid key of an owner or admin (Argilla UI → "
                                        "My settings), or unset STUDIO_ARGILLA_URL to use the embedded Argilla.")
        if response.status_code == 404:
            raise ArgillaNotFound(f"Argilla has no such resource while {what} ({path}).",
                                  hint="It was deleted in Argilla; push again to recreate it.")
        if response.status_code >= 500:
            raise ArgillaUnavailable(f"Argilla at {self.url} failed while {what} (HTTP {response.status_code}).",
                                     hint="It may be restarting; retry in a moment.")
        if response.status_code >= 400:
            detail = _detail(response)
            raise ReviewError(f"Argilla rejected the request while {what} (HTTP {response.status_code}): {detail}",
                              hint="If the dataset's settings were changed in Argilla, push to a new dataset name.")
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # -- users and workspaces ----------------------------------------------------------------------------
    def me(self) -> ArgillaUser:
        data = self.request("GET", "/api/v1/me", what="checking the API key")
        return ArgillaUser(data["id"], data["username"], data["role"])

    def users(self) -> dict[str, str]:
        """user id -> username (owners and admins may list users)."""
        data = self.request("GET", "/api/v1/users", what="listing users")
        return {u["id"]: u["username"] for u in data["items"]}

    def workspace_id(self, name: str) -> str:
        data = self.request("GET", "/api/v1/me/workspaces", what="listing workspaces")
        for ws in data["items"]:
            if ws["name"] == name:
                return ws["id"]
        created = self.request("POST", "/api/v1/workspaces", json={"name": name}, what=f"creating workspace {name}")
        return created["id"]

    # -- datasets ------------------------------------------------------------------------------------------
    def find_dataset(self, name: str, workspace_id: str) -> dict | None:
        data = self.request("GET", "/api/v1/me/datasets", what="listing datasets")
        return next((d for d in data["items"] if d["name"] == name and d["workspace_id"] == workspace_id), None)

    def dataset(self, dataset_id: str) -> dict:
        return self.request("GET", f"/api/v1/datasets/{dataset_id}", what="reading the dataset")

    def create_dataset(self, body: dict) -> dict:
        return self.request("POST", "/api/v1/datasets", json=body, what=f"creating dataset {body['name']}")

    def delete_dataset(self, dataset_id: str) -> None:
        self.request("DELETE", f"/api/v1/datasets/{dataset_id}", what="deleting the dataset")

    def publish(self, dataset_id: str) -> dict:
        return self.request("PUT", f"/api/v1/datasets/{dataset_id}/publish", what="publishing the dataset")

    def items(self, dataset_id: str, kind: str) -> list[dict]:
        """``kind`` is 'fields', 'questions', 'metadata-properties'."""
        path = f"/api/v1/{'me/' if kind == 'metadata-properties' else ''}datasets/{dataset_id}/{kind}"
        return self.request("GET", path, what=f"reading the dataset's {kind}")["items"]

    def add(self, dataset_id: str, kind: str, body: dict) -> dict:
        return self.request("POST", f"/api/v1/datasets/{dataset_id}/{kind}", json=body,
                            what=f"adding {kind} {body.get('name')}")

    def progress(self, dataset_id: str) -> dict:
        return self.request("GET", f"/api/v1/datasets/{dataset_id}/progress", what="reading progress")

    # -- records ---------------------------------------------------------------------------------------------
    def upsert_records(self, dataset_id: str, items: list[dict]) -> list[dict]:
        """Create or update by ``external_id`` (idempotent); at most BULK_LIMIT items."""
        data = self.request("PUT", f"/api/v1/datasets/{dataset_id}/records/bulk", json={"items": items},
                            what=f"sending {len(items)} records")
        return data["items"]

    def iter_record_pages(self, dataset_id: str, page_size: int = PAGE_LIMIT,
                          include: str = "responses") -> Iterator[list[dict]]:
        """Every record with its responses, page by page (the database listing, not the search index)."""
        offset = 0
        while True:
            data = self.request("GET", f"/api/v1/datasets/{dataset_id}/records",
                                params={"include": include, "offset": offset, "limit": page_size},
                                what=f"reading records {offset}-{offset + page_size}")
            items = data["items"]
            if items:
                yield items
            if len(items) < page_size:
                return
            offset += page_size


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return str(detail)[:300]
