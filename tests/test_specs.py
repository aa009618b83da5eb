"""The one spec loader (core/specs.py): every rule has a pytest.raises(..., match=...), and every config
that uses it still loads its example and refuses an unknown key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import yaml

from core.errors import BadInput, TrainingError
from core.specs import FieldDoc, MAX_TEXT_CHARS, check_fields, describe_fields, load_spec, quote
from tests.fixtures.core import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"


@dataclass(frozen=True)
class Rubric:
    name: str = field(default="length", metadata={"help": "Rubric name.", "max_len": 40})
    params: dict[str, Any] = field(default_factory=dict, metadata={"help": "Its parameters."})


@dataclass
class Judge:
    kind: str = field(default="llm", metadata={"help": "Who judges.", "choices": ("llm", "rubric")})
    temperature: float = field(default=0.0, metadata={"help": "0 to 2.", "min": 0, "max": 2})
    top_p: float = field(default=1.0, metadata={"help": "Above 0, at most 1.", "gt": 0, "max": 1})
    max_tokens: int = field(default=400, metadata={"help": "16 to 8192.", "min": 16, "max": 8192})
    repair: bool = field(default=True, metadata={"help": "Repair bad JSON."})
    swap_margin: float | None = field(default=None, metadata={"help": "Empty = never.", "min": 0, "max": 4})
    aspects: tuple[str, ...] = field(default=("honesty",), metadata={"help": "Aspects.", "min_len": 1})
    modules: list[str] = field(default_factory=lambda: ["q_proj"], metadata={"help": "Modules.", "accepts_one": True})
    order: Literal["ab", "ba"] = field(default="ab", metadata={"help": "Order."})
    rubric: Rubric = field(default_factory=Rubric, metadata={"help": "The rubric."})

    def __post_init__(self):
        check_fields(self)
        if self.kind == "rubric" and self.swap_margin is not None:
            raise BadInput(f"swap_margin={self.swap_margin} is set for a rubric.", hint="Remove swap_margin.")


@dataclass
class Run:
    name: str = field(metadata={"help": "Required."})
    judge: Judge = field(default_factory=Judge, metadata={"help": "The judge."})
    judges: list[Judge] = field(default_factory=list, metadata={"help": "More judges."})
    sizes: dict[str, int] = field(default_factory=dict, metadata={"help": "Per target.", "min": 32})
    funcs: list[str | dict] = field(default_factory=list, metadata={"help": "Names or mappings."})


def load(data: dict, **kwargs) -> Run:
    return load_spec(Run, data, label="the test config", **kwargs)


@pytest.mark.parametrize("data, match", [
    ({"name": "x", "judge": {"rubric": {"parms": {}}}},
     r"^judge\.rubric\.parms: unknown key in the test config\. Did you mean 'params'\? Known keys here: name, params\.$"),
    ({"nmae": "x"}, r"^nmae: unknown key.*Did you mean 'name'\?.*Known keys here: name, judge, judges, sizes, funcs"),
    ({"name": "x", "zzz": 1}, r"^zzz: unknown key in the test config\. Known keys here: name, judge"),
    ({"name": "x", "judge": {"x" * 500: 1}}, r"^judge\.x{57}\.\.\.: unknown key"),
])
def test_unknown_keys_name_the_full_path_with_a_suggestion_and_the_known_keys(data, match):
    with pytest.raises(BadInput, match=match) as err:
        load(data)
    assert len(err.value.message) < 200


@pytest.mark.parametrize("data, match", [
    ({"name": "x", "judge": {"temperature": "hot"}}, r"^judge\.temperature='hot' must be a number\. Write a number"),
    ({"name": "x", "judge": {"max_tokens": 100.5}}, r"^judge\.max_tokens=100\.5 must be a whole number\."),
    ({"name": "x", "judge": {"repair": "yes"}}, r"^judge\.repair='yes' must be true or false\. Write true or false"),
    ({"name": 5}, r"^name=5 must be text\. .*quote it"),
    ({"name": "x", "judge": {"aspects": "honesty"}}, r"^judge\.aspects='honesty' must be a list\. Write a list"),
    ({"name": "x", "judge": [1]}, r"^judge must be a mapping of keys to values, not list\. .*under judge"),
    ({"name": "x", "sizes": {"a": "big"}}, r"^sizes\.a='big' must be a whole number"),
    ({"name": "x", "sizes": {1: 64}}, r"^sizes has the key 1, which is not text\. Quote the key"),
    ({"name": "x", "funcs": [3]}, r"^funcs\[0\]=3 must be text or a mapping"),
    ({"name": "x", "judges": [{}, {"kind": "human"}]}, r"^judges\[1\]\.kind='human' is not one of the choices"),
    ({"name": "x", "judge": {"temperature": float("nan")}}, r"^judge\.temperature=nan must be a finite number"),
    ({"name": "x", "judge": {"temperature": 10 ** 400}}, r"^judge\.temperature=1000.*\.\.\. is out of range"),
    ({}, r"^name is missing from the test config\. Add `name: \.\.\.`"),
])
def test_wrong_types_are_named_with_the_path_and_the_fix(data, match):
    with pytest.raises(BadInput, match=match):
        load(data)


def test_bool_is_not_a_number_here():
    with pytest.raises(BadInput, match=r"^judge\.max_tokens=True must be a whole number\. true and false are not"):
        load({"name": "x", "judge": {"max_tokens": True}})
    with pytest.raises(BadInput, match=r"^judge\.temperature=False must be a number"):
        load({"name": "x", "judge": {"temperature": False}})


@pytest.mark.parametrize("judge, match", [
    ({"temperature": 3}, r"^judge\.temperature=3 is out of range\. Use a number from 0 to 2\.$"),
    ({"top_p": 0}, r"^judge\.top_p=0 is out of range\. Use a number above 0 and at most 1\.$"),
    ({"max_tokens": 4}, r"^judge\.max_tokens=4 is out of range\. Use a whole number from 16 to 8192\.$"),
    ({"swap_margin": 4.5}, r"^judge\.swap_margin=4\.5 is out of range"),
    ({"rubric": {"name": "n" * 41}}, r"^judge\.rubric\.name is 41 characters long .*Use at most 40 characters"),
])
def test_bounds_from_metadata(judge, match):
    with pytest.raises(BadInput, match=match):
        load({"name": "x", "judge": judge})
    with pytest.raises(BadInput, match=r"^sizes\.a=8 is out of range\. Use a whole number of at least 32\."):
        load({"name": "x", "sizes": {"a": 8}})


@pytest.mark.parametrize("judge, match", [
    ({"kind": "rubirc"}, r"^judge\.kind='rubirc' is not one of the choices\. Did you mean 'rubric'\? "
                         r"Use one of: llm, rubric"),
    ({"order": "ca"}, r"^judge\.order='ca' is not one of the choices\. .*Use one of: ab, ba\.$"),
    ({"aspects": ["ok", ""]}, r"^judge\.aspects\[1\]='' is empty\. Use at least 1 character\.$"),
])
def test_choices_and_item_rules(judge, match):
    with pytest.raises(BadInput, match=match):
        load({"name": "x", "judge": judge})


def test_a_long_value_is_quoted_short():
    long = "word " * 5000
    with pytest.raises(BadInput) as err:
        load({"name": "x", "judge": {"temperature": long}})
    assert err.value.message.startswith("judge.temperature='word word") and "..." in err.value.message
    assert len(err.value.message) < 120 and long not in str(err.value)
    with pytest.raises(BadInput, match=r"is 100,001 characters long") as err:
        load({"name": "x" * (MAX_TEXT_CHARS + 1)})
    assert len(str(err.value)) < 200
    assert quote("a" * 100) == "'" + "a" * 56 + "..." and quote(3) == "3"


def test_coercion_defaults_and_nesting():
    run = load({"name": "x", "judge": {"temperature": 1, "aspects": ["a", "b"], "modules": "all-linear"},
                "judges": [{"kind": "rubric"}], "funcs": ["length", {"rubric": "x"}], "sizes": {"a": 64}})
    assert run.judge.temperature == 1.0 and isinstance(run.judge.temperature, float)
    assert run.judge.aspects == ("a", "b") and run.judge.modules == ["all-linear"]
    assert isinstance(run.judges[0], Judge) and run.judges[0].kind == "rubric"
    assert load({"name": "x", "judge": None}).judge == Judge()         # an empty section = its defaults
    assert load({"name": "x", "sizes": None, "judges": None}).sizes == {}
    assert load({"name": "x", "judge": {"swap_margin": None}}).judge.swap_margin is None


def test_rules_between_fields_are_the_class_own_and_get_the_path():
    with pytest.raises(BadInput, match=r"^judges\[0\]\.swap_margin=1\.0 is set for a rubric\. Remove swap_margin"):
        load({"name": "x", "judges": [{"kind": "rubric", "swap_margin": 1}]})


def test_the_caller_picks_the_error_class():
    with pytest.raises(TrainingError, match=r"^judge\.colour: unknown key"):
        load_spec(Run, {"name": "x", "judge": {"colour": 1}}, error=TrainingError)
    with pytest.raises(TrainingError, match=r"^The test config must be a mapping of keys to values, not int"):
        load_spec(Run, 5, error=TrainingError, label="the test config")


def test_check_fields_holds_a_directly_built_dataclass_to_the_same_rules():
    with pytest.raises(BadInput, match=r"^max_tokens=True must be a whole number"):
        Judge(max_tokens=True)
    with pytest.raises(BadInput, match=r"^kind='human' is not one of the choices"):
        Judge(kind="human")
    judge = Judge(temperature=1, aspects=["a"], rubric={"name": "regex"})
    assert judge.temperature == 1.0 and judge.aspects == ("a",) and judge.rubric == Rubric(name="regex")


def test_describe_fields_for_forms_and_docs():
    rows = {row.path: row for row in describe_fields(Run)}
    assert rows["judge"].kind == "section" and rows["judge.rubric.params"].type == "dict[str, Any]"
    temperature = rows["judge.temperature"]
    assert (temperature.kind, temperature.default, temperature.bounds, temperature.help) == ("float", 0.0, "from 0 to 2",
                                                                                             "0 to 2.")
    assert rows["judge.top_p"].bounds == "above 0 and at most 1" and rows["sizes"].bounds == "of at least 32"
    assert rows["judge.kind"].choices == ("llm", "rubric") and rows["judge.swap_margin"].kind == "float"
    assert rows["judge.aspects"].default == ["honesty"] and rows["name"].default is None
    assert isinstance(rows["judge.order"], FieldDoc) and rows["judge.order"].name == "order"


# -- every config that uses the loader: its examples load, an unknown key is refused -----------------------
def _example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def _configs():
    from pipelines.compare.judging import JudgeSpec
    from pipelines.compare.spec import ComparisonSpec
    from pipelines.generate.config import GenerationConfig
    from pipelines.generate.preprocess import PreprocessConfig
    from pipelines.judge.llm import JudgeConfig
    from pipelines.train.spec import RunSpec
    from storage.pairs import PairFilter
    from storage.snapshot_spec import SnapshotSpec
    from studio.services.generate import _filters

    generate, compare, train = _example("generate.yaml"), _example("compare.yaml"), _example("train.yaml")
    return [
        ("generate.yaml", GenerationConfig.from_dict, generate, ("judge", "rubric")),
        ("demo/generate.yaml", GenerationConfig.from_dict, _example("demo/generate.yaml"), ("seeds",)),
        ("preprocess", PreprocessConfig.from_dict, generate.get("preprocess", {}), ()),
        ("compare.yaml", ComparisonSpec.from_dict, compare, ("prompts",)),
        ("demo/compare.yaml", ComparisonSpec.from_dict, _example("demo/compare.yaml"), ("sampling",)),
        ("judge", lambda d: JudgeSpec.from_dict(d, path=""), train["evaluation"]["judge"], ()),
        ("judge config", JudgeConfig.from_dict, {"mode": "pairwise"}, ()),
        ("train.yaml", RunSpec.from_dict, train, ("peft",)),
        ("demo/train.yaml", RunSpec.from_dict, _example("demo/train.yaml"), ("evaluation",)),
        ("snapshot", SnapshotSpec.from_dict, {"record_kind": "sft", "generation_run_ids": ["gen_1"]}, ()),
        ("pair filter", _filters, {"run_id": "gen_1", "min_confidence": 0.5}, ()),
        ("pair filter type", lambda d: load_spec(PairFilter, d), {"max_length": 10}, ()),
    ]


def _with_typo(data: dict, section: tuple[str, ...]) -> tuple[dict, str]:
    data = yaml.safe_load(yaml.safe_dump(data))
    node = data
    for key in section:
        node = node.setdefault(key, {}) if isinstance(node.get(key), dict) or key not in node else node[key]
    node["colour"] = "red"
    return data, ".".join((*section, "colour"))


@pytest.mark.parametrize("index", range(12))
def test_each_config_loads_its_example_and_refuses_an_unknown_key(index):
    name, build, data, section = _configs()[index]
    assert build(data) is not None, name
    bad, path = _with_typo(data, section)
    with pytest.raises((BadInput, TrainingError), match=rf"^{path}: unknown key in .*Known keys here: "):
        build(bad)
