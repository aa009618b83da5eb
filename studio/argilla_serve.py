"""Run argilla_server (``start`` or ``worker``) with the embedded search engine's gaps filled.

Runs with .venv-argilla's Python, by path and with ``-P``, like ``argilla_bootstrap.py``: only
argilla_server and the standard library are imported here.

Why: argilla-server updates a record's responses and removes suggestions in the search index with
Painless update scripts (``ctx._source.responses.add(...)``). The embedded engine, osmem, has no
script support, so every submitted review answered HTTP 500 although the answer was saved in the
database. With ``STUDIO_OSMEM_COMPAT=1`` (set by the studio when osmem is the engine) those three
index updates become read-modify-write of the whole document, which osmem supports. The result is
the same document the script would have produced. Updates run one at a time in this process, so
two reviewers answering the same record at once cannot overwrite each other's entry; the database
stays the source of truth and ``search-engine reindex`` rebuilds the index from it in any case.

    python -P studio/argilla_serve.py start --host 127.0.0.1 --port 6900 --no-access-log
    python -P studio/argilla_serve.py worker --num-workers 1
"""

from __future__ import annotations

import sys

# Run by path, Python puts studio/ first on sys.path, where studio/secrets.py would shadow the
# standard library's ``secrets``. Callers also pass -P; this is the guard.
sys.path[:] = [p for p in sys.path if p not in ("", __file__.rsplit("/", 1)[0])]

import asyncio  # noqa: E402
import os  # noqa: E402
from typing import Any, Callable  # noqa: E402

COMPAT_ENV = "STUDIO_OSMEM_COMPAT"


def _same_id(a: Any, b: Any) -> bool:
    return str(a) == str(b)


def patch_search_engine_for_osmem() -> None:
    """Replace the three script-based index updates with whole-document rewrites."""
    from argilla_server.search_engine.commons import es_index_name_for_dataset
    from argilla_server.search_engine.opensearch import OpenSearchEngine

    lock = asyncio.Lock()

    async def rewrite(engine: Any, index: str, doc_id: str, change: Callable[[dict], None]) -> None:
        async with lock:
            found = await engine.client.get(index=index, id=doc_id)
            source = found["_source"]
            change(source)
            await engine.client.index(index=index, id=doc_id, body=source, refresh=True)

    async def update_record_response(self: Any, response: Any) -> None:
        record = response.record
        entry = self._map_record_response_to_es(response)

        def change(source: dict) -> None:
            kept = [r for r in source.get("responses") or [] if not _same_id(r.get("id"), entry["id"])]
            source["responses"] = [*kept, entry]

        await rewrite(self, es_index_name_for_dataset(record.dataset), str(record.id), change)

    async def delete_record_response(self: Any, response: Any) -> None:
        record = response.record

        def change(source: dict) -> None:
            if source.get("responses") is not None:
                source["responses"] = [r for r in source["responses"] if not _same_id(r.get("id"), response.id)]

        await rewrite(self, es_index_name_for_dataset(record.dataset), str(record.id), change)

    async def delete_record_suggestion(self: Any, suggestion: Any) -> None:
        def change(source: dict) -> None:
            (source.get("suggestions") or {}).pop(suggestion.question.name, None)

        index = es_index_name_for_dataset(suggestion.record.dataset)
        await rewrite(self, index, str(suggestion.record_id), change)

    OpenSearchEngine.update_record_response = update_record_response
    OpenSearchEngine.delete_record_response = delete_record_response
    OpenSearchEngine.delete_record_suggestion = delete_record_suggestion


def main(argv: list[str]) -> None:
    if os.environ.get(COMPAT_ENV) == "1":
        patch_search_engine_for_osmem()
    from argilla_server.cli import app

    app(argv, prog_name="argilla_server")


if __name__ == "__main__":
    main(sys.argv[1:])
