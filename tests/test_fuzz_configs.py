"""Fuzzed YAML configs and form values: any input gives a valid config (that survives a round trip
through YAML) or a StudioError with a message; never another exception.

Configs are fuzzed two ways: arbitrary text, and the shipped example with a few of its values
replaced, deleted or joined by unknown keys (so the fuzzing reaches the deep validators instead of
stopping at the first missing key). Form values are what the pages' widgets can produce (any text,
any number including NaN and infinities) sent to the services' validators, against a real DuckDB
in one STUDIO_HOME for the module.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import tests.fixtures.fuzz  # noqa: F401  (the hypothesis profiles)
from pipelines.generate.config import GenerationConfig
from storage.db import get_database
from core.errors import StudioError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "generate.yaml").read_text())
NUMBERS = st.integers(-10, 10) | st.integers() | st.floats() | st.sampled_from([0, 1, 0.5, 2**63, -1e308])
WORDS = st.sampled_from(["seeds", "self_instruct", "evol", "llm", "rubric", "pointwise", "pairwise", "listwise",
                         "endpoint:embedded", "local:tiny", "length", "redact", "drop", "lora", "qlora", "full",
                         "dpo", "sft", "grpo", "reward_model", "cosine", "fp32", "auto", "cpu_smoke_test", ""])
SCALARS = st.none() | st.booleans() | NUMBERS | WORDS | st.text(max_size=12)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6) | WORDS, inner, max_size=3), max_leaves=6)


def _key_paths(node, prefix=()):
    """Every (container, key) position of a nested dict/list, parents before children."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from _key_paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield prefix + (index,)
            yield from _key_paths(value, prefix + (index,))


def _parent(data, path):
    for key in path[:-1]:
        data = data[key]
    return data


@st.composite
def mutated(draw, base: dict) -> dict:
    """``base`` with 1-3 values replaced, deleted, or an unknown key added next to them."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_key_paths(data))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(data, path), path[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[key] = draw(VALUES)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
    return data


def _check_result(build, source, loads) -> None:
    """``build(source)`` is a config that round-trips, or a StudioError with a message."""
    try:
        config = build(source)
    except StudioError as exc:
        assert exc.message.strip()
        return
    again = loads(config.to_yaml())
    assert again.to_dict() == config.to_dict(), "a valid config changed on its way through YAML"


NASTY_YAML = [
    "!!python/object/apply:os.system ['echo pwned']",
    "seeds: &a [*a]",
    "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nseeds: {texts: *c}",
    "seeds:\n  texts: [\"x\"]\n\tinstructions: {}",
    "name: [unclosed",
    "---\n---\n",
    "seeds: {texts: [hello]}\nseeds: {texts: [again]}",
    "\ufeffseeds: {texts: [bom]}",
    "x.yaml",
    "[1, 2, 3]",
    "42",
]


@pytest.mark.parametrize("text", NASTY_YAML)
def test_nasty_generation_yaml(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _check_result(GenerationConfig.from_yaml, text, GenerationConfig.from_yaml)
    assert not (tmp_path / "pwned").exists()


@given(text=st.text(max_size=300))
def test_arbitrary_text_as_generation_yaml(text):
    _check_result(GenerationConfig.from_yaml, text, GenerationConfig.from_yaml)


@given(data=mutated(EXAMPLE), via_yaml=st.booleans())
def test_mutated_generation_config(data, via_yaml):
    if via_yaml:
        _check_result(GenerationConfig.from_yaml, yaml.safe_dump(data, allow_unicode=True), GenerationConfig.from_yaml)
    else:
        _check_result(GenerationConfig.from_dict, data, GenerationConfig.from_yaml)


# -- the training RunSpec (pipelines/train/spec.py) ------------------------------------------------------
RUN_SPEC = {"name": "fuzz run", "recipe": "dpo", "base_model": "tiny", "snapshot_id": "snap_1",
            "preset": "cpu_smoke_test", "include_sft": False, "reward_funcs": [], "stage_hyper": {},
            "peft": {"method": "lora", "r": 8}, "hyper": {"learning_rate": 1e-4, "max_steps": 4}}


def _run_spec():
    return pytest.importorskip("pipelines.train.spec").RunSpec


# Found by test_mutated_run_spec: a YAML value of the wrong type once raised TypeError/AttributeError
# instead of a TrainingError. Kept as fixed regression cases.
RUN_SPEC_BUGS = {
    "recipe is a list": {"recipe": ["dpo"]},
    "stage_hyper is null": {"stage_hyper": None},
    "hyper is a number, with a preset": {"hyper": 5},
    "peft is text, with a preset": {"peft": "lora"},
    "preset is a mapping": {"preset": {"name": "cpu_smoke_test"}},
}


@pytest.mark.parametrize("change", [pytest.param(v, id=k) for k, v in RUN_SPEC_BUGS.items()])
def test_run_spec_values_of_the_wrong_type(change):
    spec_cls = _run_spec()
    _check_result(spec_cls.from_dict, {**RUN_SPEC, **change}, spec_cls.from_yaml)


@given(data=mutated(RUN_SPEC), via_yaml=st.booleans())
def test_mutated_run_spec(data, via_yaml):
    spec_cls = _run_spec()
    if via_yaml:
        _check_result(spec_cls.from_yaml, yaml.safe_dump(data, allow_unicode=True), spec_cls.from_yaml)
    else:
        _check_result(spec_cls.from_dict, data, spec_cls.from_yaml)


@given(text=st.text(max_size=200) | st.sampled_from(NASTY_YAML))
def test_arbitrary_text_as_run_spec_yaml(text):
    spec_cls = _run_spec()
    _check_result(spec_cls.from_yaml, text, spec_cls.from_yaml)


# -- form values sent to the services ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def home(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-forms")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(folder / "home"))
        yield folder / "home"
        get_database().close()


TEXT = st.text(max_size=40) | st.sampled_from(["", " ", "../x", "a\x00b", "x" * 300, "http://127.0.0.1:9/v1"])
FORM_NUMBER = st.integers(-5, 300) | st.floats() | st.sampled_from([math.nan, math.inf, -math.inf, 1e300])


def _studio_error_or_ok(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except StudioError as exc:
        assert exc.message.strip()
        return None


@given(name=TEXT, base_url=TEXT, model=TEXT, api_key_env=st.none() | TEXT, api_key=st.none() | TEXT,
       concurrency=FORM_NUMBER, timeout_s=FORM_NUMBER, max_retries=FORM_NUMBER)
def test_endpoint_form(home, name, base_url, model, api_key_env, api_key, concurrency, timeout_s, max_retries):
    from core.secrets import read_secret
    from studio.services import models

    record = _studio_error_or_ok(models.add_endpoint, name, base_url, model, api_key_env=api_key_env,
                                 api_key=api_key, concurrency=concurrency, timeout_s=timeout_s,
                                 max_retries=max_retries)
    if record is not None:
        assert models.get_endpoint(name).base_url == base_url.rstrip("/")
        if api_key:
            assert read_secret(record.api_key_secret) == api_key  # the secrets file keeps any key intact
        models.remove_endpoint(name)


@given(model=TEXT, price_in=FORM_NUMBER, price_out=FORM_NUMBER)
def test_price_form(home, model, price_in, price_out):
    from studio.services import prices

    try:
        prices.set_price(model, float(price_in), float(price_out))
    except StudioError as exc:
        assert exc.message.strip()
        return
    assert 0 <= price_in <= prices.MAX_PRICE and 0 <= price_out <= prices.MAX_PRICE
    listed = {p["model"]: p for p in prices.list_prices()}
    assert listed[model.strip()]["input_usd_per_mtok"] == pytest.approx(float(price_in))


# What the Generate page's filter widgets can send: text inputs, sliders / number inputs, a checkbox.
PAIR_FILTERS = st.fixed_dictionaries({}, optional={
    "run_id": st.none() | TEXT, "model": st.none() | TEXT, "min_confidence": st.none() | FORM_NUMBER,
    "max_confidence": st.none() | FORM_NUMBER, "max_length": st.none() | st.integers(), "swap_disagreement":
    st.none() | st.booleans()})


@given(kind=WORDS | TEXT, order=WORDS | TEXT, limit=st.integers(), offset=st.integers(), filters=PAIR_FILTERS)
def test_pair_listing_form(home, kind, order, limit, offset, filters):
    from studio.services import generate

    rows = _studio_error_or_ok(generate.list_pairs, kind, filters, limit=limit, offset=offset, order=order)
    assert rows is None or isinstance(rows, list)
    count = _studio_error_or_ok(generate.count_pairs, kind, filters)
    assert count is None or count >= 0
