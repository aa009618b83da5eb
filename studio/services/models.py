"""The model registry and LLM endpoints: what pages and the CLI call to add, pull, list and try models.

Why one service: generation, judging, training and comparison all pick "a model" from the same
list of targets (``endpoint:<name>`` or ``local:<name>``), and every way a model arrives (pull,
folder, GGUF, hub) is validated the same way before it is registered. User models are
registered in place, never copied; only pulls and hub downloads write under STUDIO_HOME/models.
API keys go to ``core.secrets``; DuckDB holds only the secret's name.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from pipelines.llm import targets
from pipelines.models.inspect import inspect_folder, inspect_gguf
from pipelines.models.pull import DEFAULT_MODEL, Progress, pull, spec_for
from storage import registry
from storage.db import get_database
from storage.registry import EndpointRecord, ModelRecord
from core import settings as settings_mod
from core.settings import EMBEDDED_ENDPOINT
from core.errors import BadInput, ModelLoadError, StudioError
from core.inputs import MAX_MODEL_NAME_CHARS, check_name, check_path, quote
from core.urls import parse_endpoint_url, redact_url
from studio import access

if TYPE_CHECKING:
    from pipelines.llm.base import LLMBackend, SamplingParams

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*/[A-Za-z0-9][A-Za-z0-9._\-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Target:
    """Something that can answer prompts: an endpoint or a local transformers model."""

    key: str            # 'endpoint:<name>' or 'local:<name>'
    label: str
    kind: str           # 'endpoint' or 'local'


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadInput(f"{what} name {quote(name)} is not allowed.",
                       hint="Use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.")
    return name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._\-]+", "-", text).strip("-._").lower()[:64] or "model"


# -- models ----------------------------------------------------------------------------------
def list_models() -> list[ModelRecord]:
    return registry.list_models(get_database())


def get_model(name: str) -> ModelRecord:
    return targets.find_model(name)


def _refuse_duplicate_model(name: str) -> None:
    if registry.get_model(get_database(), name) is not None:
        raise BadInput(f"A model named {name!r} already exists.", hint="Choose another name or remove that model first.")


def add_model(source: str, name: str | None = None) -> ModelRecord:
    """Register a local folder (transformers model or PEFT adapter), a .gguf file or a hub id.

    An empty or missing ``name`` means "derive it from the folder or file name"."""
    if not source or not str(source).strip():
        raise BadInput("No model source given.", hint="Give a folder, a .gguf file or a hub id like org/name.")
    path = check_path(str(source), "model source")
    if path.exists():
        name = _check_name(name or _slug(path.stem if path.is_file() else path.name), "Model")
        _refuse_duplicate_model(name)
        record = _record_for_file(path, name) if path.is_file() else _record_for_folder(path, name)
    elif _HUB_ID.match(str(source)) and not str(source).startswith((".", "/")):
        name = _check_name(name or _slug(str(source).split("/")[-1]), "Model")
        _refuse_duplicate_model(name)
        record = _record_for_folder(_download_from_hub(str(source), name), name, source="hub")
        record.details["hub_id"] = str(source)
    else:
        raise BadInput(f"{quote(str(source), 200)} does not exist.",
                       hint="Give an existing folder, a .gguf file or a hub id like org/name.")
    return registry.insert_model(get_database(), record)


def _record_for_file(path: Path, name: str) -> ModelRecord:
    info = inspect_gguf(path)
    return ModelRecord(
        name=name, kind="gguf", source="gguf", gguf_path=str(path.absolute()), architecture=info.architecture,
        parameters=info.parameters, has_chat_template=info.has_chat_template,
        details={"context_length": info.context_length, "gguf_name": info.name},
    )


def _record_for_folder(folder: Path, name: str, source: str = "folder") -> ModelRecord:
    info = inspect_folder(folder)
    common = dict(name=name, source=source, architecture=info.architecture, parameters=info.parameters,
                  has_chat_template=info.has_chat_template)
    if not info.is_adapter:
        return ModelRecord(kind="hf", hf_path=str(folder.absolute()), **common)
    base = _find_base(info.base_model_name_or_path or "")
    if base is None and not Path(info.base_model_name_or_path or "").is_dir():
        raise ModelLoadError(
            f"The adapter's base model {info.base_model_name_or_path!r} is neither a registered model nor a local folder.",
            hint="Add the base model first (python -m studio models add <folder>), then the adapter.",
        )
    return ModelRecord(kind="adapter", adapter_path=str(folder.absolute()), base_model_id=base.id if base else None,
                       details={"base_model_name_or_path": info.base_model_name_or_path}, **common)


def _find_base(base: str) -> ModelRecord | None:
    """The registered model an adapter was trained on: by name, or by its transformers folder."""
    models = list_models()
    for model in models:
        if model.name == base:
            return model
    if base and Path(base).is_dir():
        target = Path(base).resolve()
        for model in models:
            if model.hf_path and Path(model.hf_path).resolve() == target:
                return model
    return None


def _download_from_hub(repo_id: str, name: str) -> Path:
    settings = settings_mod.current()
    settings.ensure_home()
    dest = settings.models_dir / name
    if dest.exists():
        raise BadInput(f"{dest} already exists.", hint="Choose another name or delete that folder.")
    tmp = settings.models_dir / f".{name}.partial"
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    except ImportError:
        raise StudioError("Downloading from the model hub needs huggingface_hub.", hint="pip install huggingface_hub") from None
    try:
        snapshot_download(repo_id, local_dir=str(tmp))
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadInput(f"The model hub has no model {repo_id!r} this machine may download ({type(exc).__name__}).",
                       hint="Check the id (org/name) and, for gated models, accept the licence and log in.") from None
    except Exception as exc:  # offline mode, DNS, proxy, timeouts: all mean "unreachable" here
        shutil.rmtree(tmp, ignore_errors=True)
        raise StudioError(
            f"This machine cannot reach the model hub to download {repo_id} ({type(exc).__name__}).",
            hint="Download the model elsewhere and add the folder: python -m studio models add <folder>.",
        ) from None
    tmp.rename(dest)
    return dest


def remove_model(name: str, delete_files: bool = False) -> list[Path]:
    """Unregister a model; with ``delete_files`` also delete its folders under STUDIO_HOME/models
    (never anything outside it). Returns the folders deleted."""
    record = get_model(name)
    doomed = _owned_folders(record) if delete_files else []
    registry.delete_model(get_database(), name)
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    targets.drop_cached_backend(f"local:{name}")
    return doomed


def _owned_folders(record: ModelRecord) -> list[Path]:
    """Top-level folders under STUDIO_HOME/models that hold this model's files and no other model's."""
    models_dir = settings_mod.current().models_dir.resolve()

    def tops(model: ModelRecord) -> set[Path]:
        out = set()
        for raw in (model.hf_path, model.gguf_path, model.adapter_path):
            if raw:
                path = Path(raw).resolve()
                if path != models_dir and path.is_relative_to(models_dir):
                    out.add(models_dir / path.relative_to(models_dir).parts[0])
        return out

    shared = set().union(*(tops(m) for m in list_models() if m.name != record.name))
    return sorted(tops(record) - shared)


def pull_model(name: str = DEFAULT_MODEL, progress: Progress | None = None) -> ModelRecord:
    """Pull a catalogue model into STUDIO_HOME/models/<name>/ and register it (idempotent)."""
    spec_for(name)
    settings = settings_mod.current()
    settings.ensure_home()
    db = get_database()
    existing = registry.get_model(db, name)
    if existing is not None and existing.source != "pull":
        raise BadInput(f"A model named {name!r} was added from {existing.hf_path or existing.gguf_path}.",
                       hint=f"Remove it first: python -m studio models remove {name}")
    pulled = pull(name, settings.models_dir / name, settings.cache_dir, progress)
    gguf, hf = str(pulled.gguf_path.absolute()), str(pulled.hf_path.absolute())
    if existing is not None and existing.gguf_path == gguf and existing.hf_path == hf:
        ensure_embedded_endpoint()
        return existing
    record = _pulled_record(name, gguf, hf)
    if existing is not None:  # STUDIO_HOME moved: keep the id other rows refer to
        record.id, record.created_at = existing.id, existing.created_at
    registry.insert_model(db, record, replace=existing is not None)
    ensure_embedded_endpoint()
    return record


def _pulled_record(name: str, gguf: str, hf: str) -> ModelRecord:
    folder, gguf_info, spec = inspect_folder(hf), inspect_gguf(gguf), spec_for(name)
    return ModelRecord(
        name=name, kind="hf", source="pull", hf_path=hf, gguf_path=gguf, architecture=folder.architecture,
        parameters=folder.parameters, has_chat_template=folder.has_chat_template,
        card={"description": spec.description},
        details={"package": f"{spec.package}=={spec.version}", "context_length": gguf_info.context_length},
    )


# -- endpoints -------------------------------------------------------------------------------
def list_endpoints() -> list[EndpointRecord]:
    """The endpoints for display: a URL stored with a credential (before they were taken out on
    the way in) is shown masked."""
    return [dataclasses.replace(e, base_url=redact_url(e.base_url)) for e in registry.list_endpoints(get_database())]


def credentials_notice(base_url: str) -> str | None:
    """What to tell the user after ``add_endpoint`` when ``base_url`` held a credential."""
    try:
        return parse_endpoint_url(base_url).notice
    except BadInput:
        return None


def get_endpoint(name: str) -> EndpointRecord:
    return targets.find_endpoint(name)


def _check_range(field_name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadInput(f"{field_name}={value!r} is out of range.", hint=f"Use a number from {low:g} to {high:g}.")


def add_endpoint(name: str, base_url: str, model: str, api_key_env: str | None = None, api_key: str | None = None,
                 concurrency: int = 8, timeout_s: float = 60.0, max_retries: int = 5) -> EndpointRecord:
    """Register an OpenAI-compatible endpoint; a given ``api_key`` goes to the secrets file."""
    _check_name(name, "Endpoint")
    if name == EMBEDDED_ENDPOINT:
        raise BadInput(f"The name {name!r} is reserved for the studio's embedded server.", hint="Choose another name.")
    url = parse_endpoint_url(base_url)  # a credential in it becomes the endpoint's key
    if not isinstance(model, str) or not model.strip():
        raise BadInput("model is empty.", hint="Give the model name the endpoint expects, e.g. gpt-4o-mini.")
    model = check_name(model, "model name", MAX_MODEL_NAME_CHARS)
    if api_key_env is not None and (not isinstance(api_key_env, str) or not _ENV_NAME.match(api_key_env)):
        raise BadInput(f"api_key_env={quote(api_key_env)} is not an environment variable name.",
                       hint="Use e.g. OPENAI_API_KEY.")
    if url.secret and (api_key_env or api_key):
        raise BadInput("The URL holds a credential and a key was given as well.",
                       hint="Give the key one way: remove it from the URL, or drop --api-key-env / the typed key.")
    if api_key_env and api_key:
        raise BadInput("Both api_key_env and api_key were given.", hint="Give one: the variable's name or the key.")
    api_key = api_key or url.secret
    _check_range("concurrency", concurrency, 1, 256)
    _check_range("timeout_s", timeout_s, 1, 3600)
    _check_range("max_retries", max_retries, 0, 20)
    db = get_database()
    if registry.get_endpoint(db, name) is not None:
        raise BadInput(f"An endpoint named {name!r} already exists.", hint="Choose another name or remove it first.")
    secret_name = None
    if api_key:
        from core.secrets import save_secret

        secret_name = f"endpoint-{name}"
        save_secret(secret_name, api_key)
    record = EndpointRecord(name=name, base_url=url.url.rstrip("/"), model=model, api_key_env=api_key_env,
                            api_key_secret=secret_name, concurrency=int(concurrency), timeout_s=float(timeout_s),
                            max_retries=int(max_retries))
    return registry.insert_endpoint(db, record)


def move_url_credentials() -> list[str]:
    """Endpoints stored before URLs were cleaned on the way in: a credential still in a stored URL moves
    to the secrets file as the endpoint's key (unless it has one already) and leaves the URL. Returns
    the endpoints cleaned; ``up`` runs it."""
    from core.secrets import save_secret

    db, cleaned = get_database(), []
    for endpoint in registry.list_endpoints(db):
        try:
            url = parse_endpoint_url(endpoint.base_url)
        except BadInput:
            continue  # shown masked (redact_url) and refused when used; nothing to move safely
        if endpoint.embedded or not url.moved:
            continue
        secret_name = endpoint.api_key_secret
        if url.secret and not (endpoint.api_key_env or endpoint.api_key_secret):
            secret_name = f"endpoint-{endpoint.name}"
            save_secret(secret_name, url.secret)
        registry.insert_endpoint(db, dataclasses.replace(endpoint, base_url=url.url.rstrip("/"),
                                                         api_key_secret=secret_name), replace=True)
        cleaned.append(endpoint.name)
    return cleaned


def remove_endpoint(name: str) -> None:
    record = get_endpoint(name)
    if record.embedded:
        raise BadInput(f"The endpoint {name!r} is the studio's embedded llama.cpp server and cannot be removed.",
                       hint="Stop it with `python -m studio down` if you do not want it running.")
    registry.delete_endpoint(get_database(), name)
    if record.api_key_secret:
        from core.secrets import delete_secret

        delete_secret(record.api_key_secret)


def ensure_embedded_endpoint() -> EndpointRecord:
    """The row for the embedded llama.cpp server, created or pointed at the current port and slots."""
    cfg = settings_mod.current()
    url = cfg.llm_url
    db = get_database()
    existing = registry.get_endpoint(db, EMBEDDED_ENDPOINT)
    if (existing is not None and existing.base_url == url and existing.embedded
            and existing.concurrency == cfg.llm_parallel):
        return existing
    # as many requests at once as the server has slots (it decodes them together)
    record = EndpointRecord(name=EMBEDDED_ENDPOINT, base_url=url, model=cfg.embedded_model, concurrency=cfg.llm_parallel,
                            timeout_s=120.0, max_retries=3, embedded=True)
    if existing is not None:
        record.id, record.created_at = existing.id, existing.created_at
    return registry.insert_endpoint(db, record, replace=existing is not None)


# -- targets and backends ----------------------------------------------------------------------
def list_targets() -> list[Target]:
    """Everything that can answer a prompt, endpoints first."""
    targets = [Target(f"endpoint:{e.name}", f"{e.name} · {e.model} @ {e.base_url}", "endpoint") for e in list_endpoints()]
    for model in list_models():
        if model.loadable:
            what = "adapter" if model.adapter_path else "transformers"
            targets.append(Target(f"local:{model.name}", f"{model.name} · local {what} ({model.architecture})", "local"))
    return targets


MAX_CARD_BYTES = 256 * 1024


def model_card(name: str) -> str | None:
    """The model card (README.md) in a model's folder: what a trained model is, how it was made and
    from which data; None when its folder has none."""
    record = get_model(name)
    for folder in (record.adapter_path, record.hf_path):
        card = Path(folder) / "README.md" if folder else None
        if card is not None and card.is_file():
            with open(card, "rb") as handle:
                return handle.read(MAX_CARD_BYTES).decode("utf-8", "replace")
    return None


def backend_for(key: str) -> "LLMBackend":
    """A backend for ``endpoint:<name>`` (new each call) or ``local:<name>`` (cached per process)."""
    return targets.backend_for(key)


def base_of(model: ModelRecord) -> ModelRecord | None:
    """The registered model an adapter was trained on (None for a model without one)."""
    return registry.base_of(get_database(), model)


def try_prompt(key: str, prompt: str, system: str | None = None,
               params: "SamplingParams | dict | None" = None) -> Iterator[str]:
    """Stream one answer from a target (the Models page's and ``models try``'s playground). ``params``:
    SamplingParams, or a dict of its fields (what a page passes)."""
    from pipelines.llm.base import SamplingParams

    if isinstance(params, dict):
        params = SamplingParams(**params)

    if not prompt or not prompt.strip():
        raise BadInput("The prompt is empty.", hint="Type something for the model to answer.")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    backend = backend_for(key)
    return _stream(backend, messages, params or SamplingParams(), close=key.startswith("endpoint:"))


def _stream(backend: "LLMBackend", messages: list[dict[str, str]], params: "SamplingParams", close: bool) -> Iterator[str]:
    try:
        yield from backend.stream(messages, params)
    finally:
        if close:
            backend.close()


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals(), manage={
    "add_model": "add a model",
    "remove_model": "remove a model",
    "pull_model": "pull a model",
    "add_endpoint": "add an endpoint",
    "remove_endpoint": "remove an endpoint",
    "try_prompt": "try a prompt on a model",
}, internal=("ensure_embedded_endpoint", "backend_for", "move_url_credentials"))
