"""Model registry, endpoints and the price table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from storage.db import Database
from storage.ids import new_id

MODEL_COLUMNS = (
    "id, name, kind, source, hf_path, gguf_path, adapter_path, base_model_id, training_run_id, "
    "architecture, parameters, has_chat_template, card, details, created_at"
)
INSERT_MODEL = f"INSERT INTO models ({MODEL_COLUMNS}) VALUES ({', '.join(['?'] * 15)})"
SELECT_MODELS = f"SELECT {MODEL_COLUMNS} FROM models ORDER BY created_at, name"
SELECT_MODEL_BY_NAME = f"SELECT {MODEL_COLUMNS} FROM models WHERE name = ?"
SELECT_MODEL_BY_ID = f"SELECT {MODEL_COLUMNS} FROM models WHERE id = ?"
DELETE_MODEL = "DELETE FROM models WHERE name = ?"

ENDPOINT_COLUMNS = (
    "id, name, base_url, model, api_key_env, api_key_secret, concurrency, timeout_s, max_retries, "
    "embedded, details, created_at"
)
INSERT_ENDPOINT = f"INSERT INTO endpoints ({ENDPOINT_COLUMNS}) VALUES ({', '.join(['?'] * 12)})"
SELECT_ENDPOINTS = f"SELECT {ENDPOINT_COLUMNS} FROM endpoints ORDER BY embedded DESC, created_at, name"
SELECT_ENDPOINT_BY_NAME = f"SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE name = ?"
DELETE_ENDPOINT = "DELETE FROM endpoints WHERE name = ?"

UPSERT_PRICE = """
INSERT INTO prices (model, input_usd_per_mtok, output_usd_per_mtok, updated_at)
VALUES (?, ?, ?, current_timestamp)
ON CONFLICT (model) DO UPDATE SET input_usd_per_mtok = excluded.input_usd_per_mtok,
    output_usd_per_mtok = excluded.output_usd_per_mtok, updated_at = excluded.updated_at
"""
SELECT_PRICES = "SELECT model, input_usd_per_mtok, output_usd_per_mtok FROM prices ORDER BY model"
DELETE_PRICE = "DELETE FROM prices WHERE model = ?"


@dataclass
class ModelRecord:
    name: str
    kind: str                      # 'hf', 'gguf', 'adapter', 'hub'
    source: str                    # 'pull', 'folder', 'gguf', 'hub', 'training'
    hf_path: str | None = None
    gguf_path: str | None = None
    adapter_path: str | None = None
    base_model_id: str | None = None
    training_run_id: str | None = None
    architecture: str | None = None
    parameters: int | None = None
    has_chat_template: bool | None = None
    card: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    id: str = ""
    created_at: datetime | None = None

    @property
    def servable(self) -> bool:
        return bool(self.gguf_path)

    @property
    def loadable(self) -> bool:
        return bool(self.hf_path or self.adapter_path)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out


@dataclass
class EndpointRecord:
    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    api_key_secret: str | None = None
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 5
    embedded: bool = False
    details: dict = field(default_factory=dict)
    id: str = ""
    created_at: datetime | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out


def _model_from_row(row) -> ModelRecord:
    (id_, name, kind, source, hf, gguf, adapter, base, run, arch, params, chat, card, details, created) = row
    return ModelRecord(
        name=name, kind=kind, source=source, hf_path=hf, gguf_path=gguf, adapter_path=adapter,
        base_model_id=base, training_run_id=run, architecture=arch, parameters=params,
        has_chat_template=chat, card=json.loads(card) if card else {},
        details=json.loads(details) if details else {}, id=id_, created_at=created,
    )


def _endpoint_from_row(row) -> EndpointRecord:
    (id_, name, url, model, key_env, key_secret, conc, timeout, retries, embedded, details, created) = row
    return EndpointRecord(
        name=name, base_url=url, model=model, api_key_env=key_env, api_key_secret=key_secret,
        concurrency=conc, timeout_s=timeout, max_retries=retries, embedded=embedded,
        details=json.loads(details) if details else {}, id=id_, created_at=created,
    )


def insert_model(db: Database, model: ModelRecord, replace: bool = False) -> ModelRecord:
    """Insert; with ``replace=True`` the row of the same name is swapped in one transaction."""
    model.id = model.id or new_id("mdl")
    with db.session(transaction=replace) as cur:
        if replace:
            cur.execute(DELETE_MODEL, [model.name])
        cur.execute(INSERT_MODEL, [
            model.id, model.name, model.kind, model.source, model.hf_path, model.gguf_path,
            model.adapter_path, model.base_model_id, model.training_run_id, model.architecture,
            model.parameters, model.has_chat_template, json.dumps(model.card), json.dumps(model.details),
            model.created_at or datetime.now().astimezone(),
        ])
    return model


def list_models(db: Database) -> list[ModelRecord]:
    with db.session() as cur:
        return [_model_from_row(r) for r in cur.execute(SELECT_MODELS).fetchall()]


def get_model(db: Database, name: str) -> ModelRecord | None:
    with db.session() as cur:
        row = cur.execute(SELECT_MODEL_BY_NAME, [name]).fetchone()
    return _model_from_row(row) if row else None


def base_of(db: Database, record: ModelRecord) -> ModelRecord | None:
    """The registered model an adapter (or a fine-tune) was trained on, or None."""
    if not record.base_model_id:
        return None
    with db.session() as cur:
        row = cur.execute(SELECT_MODEL_BY_ID, [record.base_model_id]).fetchone()
    return _model_from_row(row) if row else None


def delete_model(db: Database, name: str) -> bool:
    with db.session() as cur:
        return bool(cur.execute(DELETE_MODEL, [name]).fetchone()[0])


def insert_endpoint(db: Database, endpoint: EndpointRecord, replace: bool = False) -> EndpointRecord:
    """Insert; with ``replace=True`` the row of the same name is swapped in one transaction."""
    endpoint.id = endpoint.id or new_id("ep")
    with db.session(transaction=replace) as cur:
        if replace:
            cur.execute(DELETE_ENDPOINT, [endpoint.name])
        cur.execute(INSERT_ENDPOINT, [
            endpoint.id, endpoint.name, endpoint.base_url, endpoint.model, endpoint.api_key_env,
            endpoint.api_key_secret, endpoint.concurrency, endpoint.timeout_s, endpoint.max_retries,
            endpoint.embedded, json.dumps(endpoint.details), endpoint.created_at or datetime.now().astimezone(),
        ])
    return endpoint


def list_endpoints(db: Database) -> list[EndpointRecord]:
    with db.session() as cur:
        return [_endpoint_from_row(r) for r in cur.execute(SELECT_ENDPOINTS).fetchall()]


def get_endpoint(db: Database, name: str) -> EndpointRecord | None:
    with db.session() as cur:
        row = cur.execute(SELECT_ENDPOINT_BY_NAME, [name]).fetchone()
    return _endpoint_from_row(row) if row else None


def delete_endpoint(db: Database, name: str) -> bool:
    with db.session() as cur:
        return bool(cur.execute(DELETE_ENDPOINT, [name]).fetchone()[0])


def set_price(db: Database, model: str, input_usd_per_mtok: float, output_usd_per_mtok: float) -> None:
    with db.session() as cur:
        cur.execute(UPSERT_PRICE, [model, input_usd_per_mtok, output_usd_per_mtok])


def delete_price(db: Database, model: str) -> None:
    with db.session() as cur:
        cur.execute(DELETE_PRICE, [model])


def list_prices(db: Database) -> dict[str, tuple[float, float]]:
    with db.session() as cur:
        return {m: (i, o) for m, i, o in cur.execute(SELECT_PRICES).fetchall()}
