"""The model registry service on a real DuckDB, with tiny real models and the real SmolLM2 files."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from pipelines.models.inspect import inspect_folder, inspect_gguf, safetensors_parameters
from pipelines.models.pull import DEFAULT_MODEL, pull, spec_for
from storage import registry
from core.errors import BadInput, ModelLoadError, NotFound, StudioError
from studio.services import models as svc
from tests.fixtures.models import cache_dir, link_pulled_into_home


# -- adding models ----------------------------------------------------------------------------
def test_add_folder_registers_in_place(db, tiny_model_dir):
    record = svc.add_model(str(tiny_model_dir), name="tiny")
    assert record.kind == "hf" and record.source == "folder"
    assert record.hf_path == str(tiny_model_dir.absolute())
    assert record.architecture == "LlamaForCausalLM"
    assert record.parameters == sum(safetensors_parameters(p) for p in tiny_model_dir.glob("*.safetensors")) > 0
    assert record.has_chat_template is True
    assert svc.get_model("tiny").id == record.id
    assert "local:tiny" in [t.key for t in svc.list_targets()]


def test_add_folder_does_not_copy(db, studio_home, tiny_model_dir):
    svc.add_model(str(tiny_model_dir))
    assert not list((studio_home / "models").iterdir())


def test_default_name_comes_from_the_folder(db, tiny_model_dir):
    assert svc.add_model(str(tiny_model_dir)).name == tiny_model_dir.name.lower()


def test_add_adapter_links_its_registered_base(db, tiny_model_dir, tiny_adapter_dir):
    base = svc.add_model(str(tiny_model_dir), name="tiny")
    adapter = svc.add_model(str(tiny_adapter_dir), name="tiny-lora")
    assert adapter.kind == "adapter" and adapter.adapter_path == str(tiny_adapter_dir.absolute())
    assert adapter.base_model_id == base.id
    assert adapter.architecture == "LORA adapter" and adapter.parameters > 0
    assert {"local:tiny", "local:tiny-lora"} <= {t.key for t in svc.list_targets()}


def _adapter_copy(src, dest, base):
    shutil.copytree(src, dest)
    config = json.loads((dest / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base
    (dest / "adapter_config.json").write_text(json.dumps(config))
    return dest


def test_adapter_without_base_is_refused(db, tiny_adapter_dir, tmp_path):
    folder = _adapter_copy(tiny_adapter_dir, tmp_path / "nobase", "")
    with pytest.raises(ModelLoadError, match="names no base model"):
        svc.add_model(str(folder))


def test_adapter_with_unknown_base_is_refused(db, tiny_adapter_dir, tmp_path):
    folder = _adapter_copy(tiny_adapter_dir, tmp_path / "otherbase", "someorg/not-here")
    with pytest.raises(ModelLoadError, match="neither a registered model nor a local folder"):
        svc.add_model(str(folder))


def test_adapter_without_weights_is_refused(db, tiny_adapter_dir, tmp_path):
    folder = _adapter_copy(tiny_adapter_dir, tmp_path / "noweights", str(tiny_adapter_dir))
    for weights in folder.glob("adapter_model.*"):
        weights.unlink()
    with pytest.raises(ModelLoadError, match="no adapter weights"):
        inspect_folder(folder)


def test_folder_that_is_not_a_model(db, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="has no config.json"):
        svc.add_model(str(folder))
    assert svc.list_models() == []


def test_folder_with_config_but_no_weights(db, tiny_model_dir, tmp_path):
    folder = tmp_path / "empty-model"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder / "config.json")
    with pytest.raises(ModelLoadError, match=r"no weights \(\*\.safetensors or \*\.bin\)"):
        svc.add_model(str(folder))


def test_folder_with_broken_config(db, tiny_model_dir, tmp_path):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "broken")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json is not readable JSON"):
        svc.add_model(str(folder))


def test_random_bytes_are_not_a_gguf(db, tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ModelLoadError, match=r"fake\.gguf is not a GGUF file"):
        svc.add_model(str(fake))


@pytest.mark.parametrize("keep", [0.5, "minus-1000"])
def test_truncated_gguf_is_refused(db, smollm2_gguf, tmp_path, keep):
    size = smollm2_gguf.stat().st_size
    length = int(size * keep) if isinstance(keep, float) else size - 1000
    cut = tmp_path / "cut.gguf"
    with open(smollm2_gguf, "rb") as src, open(cut, "wb") as out:
        out.write(src.read(length))
    with pytest.raises(ModelLoadError, match=r"cut\.gguf is truncated"):
        svc.add_model(str(cut))


def test_real_gguf_registers_as_servable_only(db, smollm2_gguf):
    record = svc.add_model(str(smollm2_gguf), name="smol-gguf")
    assert record.kind == "gguf" and record.gguf_path == str(smollm2_gguf)
    assert record.architecture == "llama" and record.details["context_length"] == 8192
    assert 130_000_000 < record.parameters < 140_000_000 and record.has_chat_template
    assert "local:smol-gguf" not in [t.key for t in svc.list_targets()]
    with pytest.raises(BadInput, match="only a GGUF file"):
        svc.backend_for("local:smol-gguf")


def test_duplicate_name_is_refused(db, tiny_model_dir):
    svc.add_model(str(tiny_model_dir), name="tiny")
    with pytest.raises(BadInput, match="A model named 'tiny' already exists"):
        svc.add_model(str(tiny_model_dir), name="tiny")


@pytest.mark.parametrize("name", ["has space", "-dash-first", "x" * 65, "a/b"])
def test_bad_model_names(db, tiny_model_dir, name):
    with pytest.raises(BadInput, match="is not allowed"):
        svc.add_model(str(tiny_model_dir), name=name)


def test_missing_path(db, tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        svc.add_model(str(tmp_path / "nowhere"))


def test_hub_id_offline_gives_a_clear_error(db, studio_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StudioError, match="cannot reach the model hub.*add the folder"):
        svc.add_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert svc.list_models() == []
    assert not list((studio_home / "models").iterdir())


# -- removing ---------------------------------------------------------------------------------
def test_remove_model(db, tiny_model_dir):
    svc.add_model(str(tiny_model_dir), name="tiny")
    assert svc.remove_model("tiny", delete_files=True) == []  # registered in place: files stay
    assert (tiny_model_dir / "config.json").is_file()
    with pytest.raises(NotFound, match="no model named 'tiny'"):
        svc.get_model("tiny")
    with pytest.raises(NotFound, match="no model named 'tiny'"):
        svc.remove_model("tiny")


def test_remove_deletes_only_folders_under_models(db, studio_home, tiny_model_dir):
    inside = shutil.copytree(tiny_model_dir, studio_home / "models" / "mine")
    svc.add_model(str(inside), name="mine")
    svc.add_model(str(tiny_model_dir), name="outside")
    assert svc.remove_model("mine", delete_files=False) == [] and inside.is_dir()
    svc.add_model(str(inside), name="mine")
    assert svc.remove_model("mine", delete_files=True) == [inside.resolve()]
    assert not inside.exists()
    svc.remove_model("outside", delete_files=True)
    assert (tiny_model_dir / "config.json").is_file()


def test_try_prompt_streams_from_a_local_model(db, tiny_model_dir):
    from pipelines.llm.base import SamplingParams

    svc.add_model(str(tiny_model_dir), name="tiny")
    pieces = list(svc.try_prompt("local:tiny", "Tell me a story.", params=SamplingParams(temperature=0, max_tokens=8)))
    assert pieces and "".join(pieces).strip()
    assert svc.backend_for("local:tiny") is svc.backend_for("local:tiny")  # loaded once per process


@pytest.mark.parametrize("key", ["local:nope", "endpoint:nope", "nope", "remote:x"])
def test_unknown_targets(db, key):
    with pytest.raises(NotFound):
        svc.backend_for(key)


def test_empty_prompt(db, tiny_model_dir):
    svc.add_model(str(tiny_model_dir), name="tiny")
    with pytest.raises(BadInput, match="prompt is empty"):
        svc.try_prompt("local:tiny", "   ")


# -- endpoints --------------------------------------------------------------------------------
def test_endpoint_key_goes_to_secrets_not_duckdb(db, studio_home):
    from core.secrets import read_secret

    key = "sk-test-" + "q7" * 16
    record = svc.add_endpoint("acme", "https://api.acme.test/v1/", "acme-large", api_key=key, concurrency=4)
    assert record.api_key_secret == "endpoint-acme" and record.base_url == "https://api.acme.test/v1"
    assert read_secret("endpoint-acme") == key
    with db.session() as cur:
        rows = cur.execute("SELECT * FROM endpoints").fetchall()
    assert key not in repr(rows)
    db.close()
    for path in studio_home.glob("studio.duckdb*"):
        assert key.encode() not in path.read_bytes()
    assert [e.name for e in svc.list_endpoints()] == ["acme"]
    assert "endpoint:acme" in [t.key for t in svc.list_targets()]
    svc.remove_endpoint("acme")
    assert read_secret("endpoint-acme") is None and svc.list_endpoints() == []


def test_endpoint_with_key_env(db):
    record = svc.add_endpoint("envkey", "http://127.0.0.1:9/v1", "m", api_key_env="ACME_API_KEY")
    assert record.api_key_env == "ACME_API_KEY" and record.api_key_secret is None


@pytest.mark.parametrize("kwargs, match", [
    ({"base_url": "ftp://host/v1"}, "is not an http\\(s\\) URL"),
    ({"base_url": "localhost:8000"}, "is not an http\\(s\\) URL"),
    ({"model": " "}, "model is empty"),
    ({"concurrency": 0}, "concurrency=0 is out of range"),
    ({"concurrency": 1000}, "concurrency=1000 is out of range"),
    ({"timeout_s": 0}, "timeout_s=0 is out of range"),
    ({"max_retries": -1}, "max_retries=-1 is out of range"),
    ({"max_retries": 21}, "max_retries=21 is out of range"),
    ({"api_key_env": "1BAD-NAME"}, "is not an environment variable name"),
    ({"api_key_env": "K", "api_key": "sk-abcdefghijkl"}, "Both api_key_env and api_key"),
    ({"name": "embedded"}, "reserved for the studio's embedded server"),
    ({"name": "bad name"}, "Endpoint name 'bad name' is not allowed"),
])
def test_endpoint_validation(db, kwargs, match):
    args = {"name": "ep", "base_url": "http://127.0.0.1:9/v1", "model": "m"} | kwargs
    with pytest.raises(BadInput, match=match):
        svc.add_endpoint(**args)
    assert svc.list_endpoints() == []


def test_duplicate_endpoint(db):
    svc.add_endpoint("ep", "http://127.0.0.1:9/v1", "m")
    with pytest.raises(BadInput, match="An endpoint named 'ep' already exists"):
        svc.add_endpoint("ep", "http://127.0.0.1:9/v1", "m")
    with pytest.raises(NotFound, match="no endpoint named 'other'"):
        svc.remove_endpoint("other")


def test_embedded_endpoint_follows_the_port_and_cannot_be_removed(db, monkeypatch):
    monkeypatch.setenv("STUDIO_LLM_PORT", "18001")
    first = svc.ensure_embedded_endpoint()
    assert first.embedded and first.model == DEFAULT_MODEL and first.base_url == "http://127.0.0.1:18001/v1"
    assert svc.ensure_embedded_endpoint().id == first.id
    monkeypatch.setenv("STUDIO_LLM_PORT", "18002")
    moved = svc.ensure_embedded_endpoint()
    assert moved.id == first.id and moved.base_url == "http://127.0.0.1:18002/v1"
    assert len(svc.list_endpoints()) == 1
    with pytest.raises(BadInput, match="embedded llama.cpp server and cannot be removed"):
        svc.remove_endpoint("embedded")


# -- pulling ----------------------------------------------------------------------------------
def test_pull_produces_gguf_and_trainable_copy(pulled_smollm2):
    assert pulled_smollm2.gguf_path.is_file() and inspect_gguf(pulled_smollm2.gguf_path).architecture == "llama"
    config = json.loads((pulled_smollm2.hf_path / "config.json").read_text())
    assert config.get("quantization_config") is None and config["architectures"] == ["LlamaForCausalLM"]
    info = inspect_folder(pulled_smollm2.hf_path)
    assert info.parameters == 134_515_008 and info.has_chat_template
    assert any(message.startswith("saving") for message, _ in pulled_smollm2.events)
    leftovers = [p.name for p in pulled_smollm2.dest_dir.rglob("*") if ".part" in p.name]
    assert leftovers == []


def test_pulled_copy_is_trainable(pulled_smollm2):
    """The point of the safetensors copy: transformers loads it unquantized and gradients flow."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(pulled_smollm2.hf_path)
    tokenizer = AutoTokenizer.from_pretrained(pulled_smollm2.hf_path)
    assert getattr(model, "hf_quantizer", None) is None and not getattr(model, "is_quantized", False)
    batch = tokenizer(["The capital of France is Paris."], return_tensors="pt")
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    assert torch.isfinite(loss) and model.model.embed_tokens.weight.grad.abs().sum() > 0


def test_second_pull_returns_at_once(pulled_smollm2):
    before = (pulled_smollm2.hf_path / "model.safetensors").stat().st_mtime_ns
    started = time.monotonic()
    again = pull(DEFAULT_MODEL, pulled_smollm2.dest_dir, cache_dir())
    assert time.monotonic() - started < 1.0
    assert again.hf_path == pulled_smollm2.hf_path
    assert (pulled_smollm2.hf_path / "model.safetensors").stat().st_mtime_ns == before


def test_pull_model_registers_once_with_the_embedded_endpoint(db, studio_home, pulled_smollm2):
    link_pulled_into_home(studio_home, pulled_smollm2)
    record = svc.pull_model()
    assert (record.kind, record.source, record.name) == ("hf", "pull", DEFAULT_MODEL)
    assert record.gguf_path.endswith(".gguf") and record.hf_path.endswith("/hf")
    assert record.parameters == 134_515_008 and record.has_chat_template
    assert svc.pull_model().id == record.id and len(svc.list_models()) == 1
    embedded = svc.get_endpoint("embedded")
    assert embedded.embedded and embedded.model == DEFAULT_MODEL
    assert {f"local:{DEFAULT_MODEL}", "endpoint:embedded"} <= {t.key for t in svc.list_targets()}
    assert registry.get_model(db, DEFAULT_MODEL).gguf_path == record.gguf_path


def test_pull_unknown_name_lists_the_known_ones(db):
    with pytest.raises(BadInput, match="Known names: smollm2-135m-instruct"):
        svc.pull_model("gpt-5")
    with pytest.raises(BadInput, match="no pullable model named 'x'"):
        spec_for("x")


def test_pull_refuses_to_shadow_a_user_model(db, tiny_model_dir):
    svc.add_model(str(tiny_model_dir), name=DEFAULT_MODEL)
    with pytest.raises(BadInput, match="was added from"):
        svc.pull_model()
