"""Model targets: ``endpoint:<name>`` (an OpenAI-compatible server) or ``local:<name>`` (a registered
transformers model), resolved to a backend.

One home for the lookup, the "no such model" messages and the per-process cache of local backends
(loading a model takes seconds; every stage and page of one process shares it). The app layer passes
``backend_for`` (or ``open_backend``) down into generation and comparison; pipelines never reach up
for it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Iterable, Protocol

from core.errors import BadInput, NotFound
from storage import registry
from storage.db import Database, get_database
from storage.registry import EndpointRecord, ModelRecord

if TYPE_CHECKING:
    from pipelines.llm.base import LLMBackend

_local_backends: dict[str, tuple[tuple, "LLMBackend"]] = {}
_backends_lock = threading.Lock()


class Opener(Protocol):
    def __call__(self, name: str, db: Database, *, job_id: str | None, stage: str | None,
                 concurrency: int | None) -> "LLMBackend": ...


OPENERS: dict[str, Opener] = {}   # target kind -> how to open its backend (register_kind adds one)


def register_kind(kind: str):
    """Decorator: targets ``<kind>:<name>`` open with ``fn(name, db, job_id=, stage=, concurrency=)``.
    A new kind of backend is one module with its backend class and one registered opener."""
    def decorate(fn: Opener) -> Opener:
        OPENERS[kind] = fn
        return fn
    return decorate


def split_target(key: object) -> tuple[str, str]:
    """``'local:tiny'`` -> ``('local', 'tiny')``; anything else is refused with the accepted forms."""
    kind, _, name = (key if isinstance(key, str) else "").partition(":")
    if kind not in OPENERS or not name:
        shown = repr(key)[:80]
        forms = " or ".join(f"{k}:<name>" for k in OPENERS)
        raise NotFound(f"{shown} is not a target.", hint=f"Use {forms}; see list_targets().")
    return kind, name


def find_model(name: str, db: Database | None = None) -> ModelRecord:
    db = db or get_database()
    record = registry.get_model(db, name)
    if record is None:
        names = ", ".join(m.name for m in registry.list_models(db)) or "none yet"
        raise NotFound(f"There is no model named {str(name)[:80]!r}.", hint=f"Registered models: {names}.")
    return record


def find_endpoint(name: str, db: Database | None = None) -> EndpointRecord:
    db = db or get_database()
    record = registry.get_endpoint(db, name)
    if record is None:
        names = ", ".join(e.name for e in registry.list_endpoints(db)) or "none yet"
        raise NotFound(f"There is no endpoint named {str(name)[:80]!r}.", hint=f"Endpoints: {names}.")
    return record


def check_targets(keys: Iterable[str], db: Database | None = None) -> None:
    """Every target named exists (before any work starts)."""
    for key in keys:
        kind, name = split_target(key)
        if kind in FINDERS:
            FINDERS[kind](name, db)


def open_backend(key: str, db: Database | None = None, *, job_id: str | None = None, stage: str | None = None,
                 concurrency: int | None = None) -> "LLMBackend":
    """A backend for ``key``. An endpoint's is new each call (with the database's cache and ledger,
    its rows tagged ``job_id``/``stage``; close it when done); a local model's is shared per process."""
    kind, name = split_target(key)
    return OPENERS[kind](name, db or get_database(), job_id=job_id, stage=stage, concurrency=concurrency)


@register_kind("endpoint")
def _open_endpoint(name: str, db: Database, *, job_id: str | None, stage: str | None,
                   concurrency: int | None) -> "LLMBackend":
    from pipelines.llm.openai_compat import OpenAICompatibleBackend

    backend = OpenAICompatibleBackend.from_endpoint(find_endpoint(name, db), db=db, job_id=job_id, stage=stage)
    if concurrency:
        backend.concurrency = concurrency
    return backend


@register_kind("local")
def _open_local(name: str, db: Database, *, job_id: str | None, stage: str | None,
                concurrency: int | None) -> "LLMBackend":
    return _local_backend(f"local:{name}", name, db)


def backend_for(key: str) -> "LLMBackend":
    """``open_backend`` with the defaults: what comparison and the playground are handed."""
    return open_backend(key)


def _local_backend(key: str, name: str, db: Database) -> "LLMBackend":
    model = find_model(name, db)
    if not model.loadable:
        raise BadInput(f"Model {name!r} is only a GGUF file; transformers cannot load it locally.",
                       hint="Serve it from an OpenAI-compatible endpoint, or add its transformers folder.")
    base = registry.base_of(db, model)
    signature = (model.id, model.hf_path, model.adapter_path, base.hf_path if base else None)
    with _backends_lock:
        cached = _local_backends.get(key)
        if cached and cached[0] == signature:
            return cached[1]
        from pipelines.llm.transformers_local import TransformersBackend

        backend = TransformersBackend.from_record(model, base)
        if cached:
            cached[1].close()
        _local_backends[key] = (signature, backend)
        return backend


def drop_cached_backend(key: str) -> None:
    """Close and forget a local backend (its model was removed or replaced)."""
    with _backends_lock:
        cached = _local_backends.pop(key, None)
    if cached:
        cached[1].close()


FINDERS = {"endpoint": find_endpoint, "local": find_model}   # kinds whose names the registry checks up front
