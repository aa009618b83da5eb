"""``GenerationConfig``: everything one generation run needs, as dataclasses loaded from YAML.

Why this shape (TRL's config habit): every field is documented once, in its ``metadata["help"]``,
and ``__post_init__`` validates; a ``BadInput`` names the field (its full path, such as
``responses.generators[0].sampling.temperature``), the value and the fix. Unknown YAML keys are
refused with a "did you mean" hint, so a typo never silently falls back to a default. The page,
the CLI and the stored copy of a run's config all go through ``from_yaml`` / ``to_yaml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.generate.preprocess import PreprocessConfig
from pipelines.llm.base import SamplingParams
from core.errors import BadInput, StudioError

METHODS = ("seeds", "self_instruct", "evol")
EVOL_OPERATIONS = ("deepen", "constraints", "concretize", "reasoning", "breadth")
JUDGE_KINDS = ("llm", "rubric")
JUDGE_MODES = ("pointwise", "pairwise", "listwise")
REPLY_FORMATS = ("json", "compact")
_TARGET = re.compile(r"^(endpoint|local):[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
DEFAULT_TARGET = "endpoint:embedded"


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


def _fail(name: str, value: Any, fix: str) -> None:
    raise BadInput(f"{name}={value!r} is not valid.", hint=fix)


def check_target(name: str, value: Any) -> None:
    if not isinstance(value, str) or not _TARGET.match(value):
        _fail(name, value, "Use endpoint:<name> (an OpenAI-compatible endpoint) or local:<model> "
                           "(a registered transformers model), e.g. endpoint:embedded.")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _fail(name, value, f"Use a whole number from {low} to {high}.")


@dataclass
class SamplingConfig:
    """Sampling settings of one generator; recorded with every output it makes."""

    temperature: float = _help("0 = greedy; higher = more varied (0 to 2).", default=0.7)
    top_p: float = _help("Nucleus sampling mass (above 0, at most 1).", default=1.0)
    max_tokens: int = _help("Most new tokens per answer (1 to 32768).", default=256)
    seed: int | None = _help("Random seed; candidate k of a prompt uses seed + k, so candidates differ "
                             "and each one is still cached. Empty = 0 when several candidates are asked.",
                             default=None)

    def __post_init__(self):
        if not isinstance(self.temperature, (int, float)) or not 0 <= self.temperature <= 2:
            _fail("temperature", self.temperature, "Use a number from 0 to 2.")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            _fail("top_p", self.top_p, "Use a number above 0 and at most 1.")
        _check_int("max_tokens", self.max_tokens, 1, 32768)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, 2**31 - 1)

    def to_params(self, candidate: int = 0, candidates: int = 1) -> SamplingParams:
        """Params for candidate ``candidate``: distinct seeds keep the response cache from
        collapsing several candidates of one prompt into one answer."""
        seed = self.seed
        if candidates > 1 or candidate:
            seed = (seed or 0) + candidate
        return SamplingParams(temperature=float(self.temperature), top_p=float(self.top_p),
                              max_tokens=int(self.max_tokens), seed=seed)


@dataclass
class ColumnMappingConfig:
    """Which columns of a seed file hold what."""

    text: str = _help("Column with the seed task text.", default="text")
    reference: str | None = _help("Column with a reference answer (optional).", default=None)
    metadata: list[str] = _help("Columns kept as seed metadata.", default_factory=list)


@dataclass
class SeedsConfig:
    """Where the seed tasks come from: exactly one of ``seed_set``, ``texts`` or ``file``."""

    seed_set: str | None = _help("Id or name of a seed set already imported (Seeds page / `seeds import`).",
                                 default=None)
    texts: list[str] = _help("Seed tasks typed inline, one per item.", default_factory=list)
    file: str | None = _help("A CSV, JSONL, Parquet file or a `datasets` folder to import.", default=None)
    mapping: ColumnMappingConfig = _help("Column mapping for `file`.", default_factory=ColumnMappingConfig)
    limit: int | None = _help("Use at most this many seeds (in import order); empty = all.", default=None)

    def __post_init__(self):
        given = [n for n, v in (("seed_set", self.seed_set), ("texts", self.texts), ("file", self.file)) if v]
        if len(given) != 1:
            raise BadInput(f"seeds gives {', '.join(given) or 'no source'}.",
                           hint="Give exactly one of seeds.seed_set, seeds.texts or seeds.file.")
        if self.texts and not all(isinstance(t, str) and t.strip() for t in self.texts):
            _fail("texts", self.texts, "Give a list of non-empty seed tasks.")
        if self.limit is not None:
            _check_int("limit", self.limit, 1, 10_000_000)


@dataclass
class InstructionsConfig:
    """How instructions are made from the seeds."""

    method: str = _help("'seeds' (the seeds are the instructions), 'self_instruct' (an LLM writes new tasks "
                        "from each seed) or 'evol' (Evol-Instruct rewrites each seed).", default="self_instruct")
    per_seed: int = _help("Instructions per seed (self_instruct: tasks asked for; evol: operations applied, "
                          "at most the number of evol_operations).", default=2)
    evol_operations: list[str] = _help("Evol-Instruct operations to use: deepen, constraints, concretize, "
                                       "reasoning, breadth.", default_factory=lambda: list(EVOL_OPERATIONS))
    evol_rounds: int = _help("Evol-Instruct rounds: round k evolves round k-1's output again (1 to 5).", default=1)
    generator: str = _help("Target that writes instructions: endpoint:<name> or local:<model>.",
                           default=DEFAULT_TARGET)
    sampling: SamplingConfig = _help("Sampling for instruction writing.",
                                     default_factory=lambda: SamplingConfig(temperature=0.8, max_tokens=256))
    templates: dict[str, str] = _help("Prompt template overrides by kind (self_instruct, evol:deepen, ...); "
                                      "see pipelines/generate/templates.py for the defaults.",
                                      default_factory=dict)

    def __post_init__(self):
        from pipelines.generate.templates import check_template

        if self.method not in METHODS:
            _fail("method", self.method, f"Use one of: {', '.join(METHODS)}.")
        _check_int("per_seed", self.per_seed, 1, 50)
        unknown = [op for op in self.evol_operations if op not in EVOL_OPERATIONS]
        if unknown or not self.evol_operations or len(set(self.evol_operations)) != len(self.evol_operations):
            _fail("evol_operations", self.evol_operations,
                  f"List each operation once, from: {', '.join(EVOL_OPERATIONS)}.")
        if self.method == "evol" and self.per_seed > len(self.evol_operations):
            _fail("per_seed", self.per_seed, f"With method 'evol' each seed gets one instruction per operation: "
                                             f"use at most {len(self.evol_operations)} or list more evol_operations.")
        _check_int("evol_rounds", self.evol_rounds, 1, 5)
        check_target("generator", self.generator)
        for kind, text in self.templates.items():
            check_template(kind, text, f"templates[{kind!r}]")


@dataclass
class GeneratorConfig:
    """One model that answers the instructions."""

    target: str = _help("endpoint:<name> or local:<model>.", default=DEFAULT_TARGET)
    candidates: int = _help("Candidate responses per instruction from this model (1 to 16).", default=2)
    sampling: SamplingConfig = _help("Sampling for this model's responses.", default_factory=SamplingConfig)

    def __post_init__(self):
        check_target("target", self.target)
        _check_int("candidates", self.candidates, 1, 16)


@dataclass
class ResponsesConfig:
    """Who answers the instructions, and how many times."""

    generators: list[GeneratorConfig] = _help("The models that answer; each gives `candidates` responses.",
                                              default_factory=lambda: [GeneratorConfig()])
    system_prompt: str | None = _help("System message sent before each instruction (optional).", default=None)

    def __post_init__(self):
        if not self.generators:
            _fail("generators", self.generators, "List at least one generator with a target.")
        targets = [g.target for g in self.generators]
        if len(set(targets)) != len(targets):
            _fail("generators", targets, "List each target once; raise its `candidates` for more samples.")


@dataclass
class RubricConfig:
    """A programmatic judge (see pipelines/judge/rubrics.py for the names and their params)."""

    name: str = _help("Rubric name, e.g. length, format, regex, keyword, reference_match.", default="length")
    params: dict[str, Any] = _help("The rubric's parameters.", default_factory=dict)


@dataclass
class JudgeSection:
    """Who labels the candidates, and how pairs are chosen."""

    kind: str = _help("'llm' (a model rates each candidate) or 'rubric' (a Python rubric).", default="llm")
    target: str = _help("The judge model (llm kind): endpoint:<name> or local:<model>.", default=DEFAULT_TARGET)
    mode: str = _help("'listwise' (one call rates all candidates of an instruction, in a shuffled order, and "
                      "judges again in reversed order when the best and the worst are close), 'pointwise' (one "
                      "call per candidate) or 'pairwise' (pointwise, then the best and the worst compared in both "
                      "orders to cancel position bias). With kind 'rubric' it is 'pointwise'.", default="listwise")
    aspects: list[str] | None = _help("Aspects rated 1-5; empty = the judge's defaults (helpfulness, honesty, "
                                      "instruction-following, truthfulness).", default=None)
    pointwise_template: str | None = _help("Pointwise judge prompt override (empty = default).", default=None)
    pairwise_template: str | None = _help("Pairwise judge prompt override (empty = default).", default=None)
    listwise_template: str | None = _help("Listwise judge prompt override (empty = default).", default=None)
    reply_format: str = _help("'json' (scores per aspect with a rationale) or 'compact' (one digit or one letter per "
                              "verdict, for judges too small to write JSON, e.g. the embedded 135M model).",
                              default="json")
    swap_margin: float | None = _help("Listwise: judge again in reversed order when the best and the worst "
                                      "candidate are at most this many points apart (0 to 4); empty = never.",
                                      default=1.0)
    temperature: float = _help("Judge sampling temperature (0 to 2).", default=0.0)
    max_tokens: int = _help("Most tokens of a judge reply (16 to 8192).", default=400)
    repair: bool = _help("Send one repair prompt when a reply is not valid JSON.", default=True)
    rubric: RubricConfig = _help("The rubric, when kind is 'rubric'.", default_factory=RubricConfig)
    min_sft_score: float | None = _help("An instruction's best candidate becomes an SFT pair when its overall "
                                        "score is at least this (1 to 5); empty = no SFT pairs.", default=4.0)

    def __post_init__(self):
        if self.kind not in JUDGE_KINDS:
            _fail("kind", self.kind, f"Use one of: {', '.join(JUDGE_KINDS)}.")
        if self.mode not in JUDGE_MODES:
            _fail("mode", self.mode, f"Use one of: {', '.join(JUDGE_MODES)}.")
        if self.kind == "rubric" and self.mode == "listwise":
            self.mode = "pointwise"   # the default mode; a rubric scores each candidate alone
        if self.kind == "rubric" and self.mode != "pointwise":
            _fail("mode", self.mode, "A rubric scores each candidate alone: use mode 'pointwise' with kind 'rubric'.")
        if self.reply_format not in REPLY_FORMATS:
            _fail("reply_format", self.reply_format, f"Use one of: {', '.join(REPLY_FORMATS)}.")
        custom = [n for n in ("pointwise_template", "pairwise_template", "listwise_template") if getattr(self, n)]
        if self.reply_format == "compact" and custom:
            raise BadInput(f"{custom[0]} is set, but reply_format 'compact' uses its built-in short prompts.",
                           hint=f"Remove {custom[0]}, or use reply_format 'json'.")
        if self.swap_margin is not None and (isinstance(self.swap_margin, bool)
                                             or not isinstance(self.swap_margin, (int, float))
                                             or not 0 <= self.swap_margin <= 4):
            _fail("swap_margin", self.swap_margin, "Use a number of points from 0 to 4 (1.0 re-checks close calls), "
                                                   "or leave it empty to never re-judge.")
        if self.kind == "llm":
            check_target("target", self.target)
        else:
            from pipelines.judge.rubrics import RubricJudge

            try:  # an unknown rubric or bad params are refused now, not half-way through a run
                RubricJudge(self.rubric.name, self.rubric.params)
            except StudioError as exc:
                raise BadInput(f"rubric: {exc.message}", hint=exc.hint) from None
        if self.aspects is not None and (not self.aspects or not all(isinstance(a, str) and a for a in self.aspects)):
            _fail("aspects", self.aspects, "List aspect names, or leave it empty for the defaults.")
        if not isinstance(self.temperature, (int, float)) or not 0 <= self.temperature <= 2:
            _fail("temperature", self.temperature, "Use a number from 0 to 2.")
        _check_int("max_tokens", self.max_tokens, 16, 8192)
        if self.min_sft_score is not None and (not isinstance(self.min_sft_score, (int, float))
                                               or not 1 <= self.min_sft_score <= 5):
            _fail("min_sft_score", self.min_sft_score, "Use a score from 1 to 5, or leave it empty for no SFT pairs.")


@dataclass
class GenerationConfig:
    """A whole run: seeds -> instructions -> responses -> judge -> SFT and preference pairs."""

    name: str = _help("A name for the run (shown in lists).", default="generation")
    seeds: SeedsConfig = _help("Where the seed tasks come from.",
                               default_factory=lambda: SeedsConfig(texts=["Explain what a hash map is."]))
    instructions: InstructionsConfig = _help("How instructions are made.", default_factory=InstructionsConfig)
    responses: ResponsesConfig = _help("Who answers the instructions.", default_factory=ResponsesConfig)
    judge: JudgeSection = _help("Who labels the candidates.", default_factory=JudgeSection)
    preprocess: PreprocessConfig = _help("Cleaning applied to instructions, then to responses (near-duplicates "
                                         "only within one instruction's candidates).",
                                         default_factory=PreprocessConfig)
    batch_size: int = _help("Items per batch: each batch is one round of concurrent calls and one "
                            "transaction (1 to 1024).", default=32)
    concurrency: int | None = _help("Concurrent calls per endpoint; empty = the endpoint's own setting (1 to 256).",
                                    default=None)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > 100:
            _fail("name", self.name, "Use a non-empty name of at most 100 characters.")
        _check_int("batch_size", self.batch_size, 1, 1024)
        if self.concurrency is not None:
            _check_int("concurrency", self.concurrency, 1, 256)

    # -- YAML ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> "GenerationConfig":
        return build(cls, data, "")

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> "GenerationConfig":
        """Parse YAML text, or read a ``.yaml``/``.yml`` file when given a path."""
        text = _read_yaml_source(text_or_path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise BadInput(f"The generation config is not valid YAML{where}: {getattr(exc, 'problem', exc)}.",
                           hint="Fix the YAML syntax (indentation, colons, quotes).") from None
        if data is None:
            raise BadInput("The generation config is empty.", hint="Start from examples/generate.yaml.")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)

    def targets(self) -> list[str]:
        """Every target the run calls (for checks before it starts)."""
        out = [g.target for g in self.responses.generators]
        if self.instructions.method != "seeds":
            out.insert(0, self.instructions.generator)
        if self.judge.kind == "llm":
            out.append(self.judge.target)
        return list(dict.fromkeys(out))


def _read_yaml_source(text_or_path: str | Path) -> str:
    if isinstance(text_or_path, Path) or (isinstance(text_or_path, str) and "\n" not in text_or_path
                                          and text_or_path.strip().endswith((".yaml", ".yml"))):
        path = Path(text_or_path).expanduser()
        if not path.is_file():
            raise BadInput(f"The config file {path} does not exist.", hint="Check the path (see examples/generate.yaml).")
        try:
            return path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise BadInput(f"The config file {path} is not UTF-8 text.", hint="Save it as UTF-8.") from None
    if not isinstance(text_or_path, str):
        raise BadInput(f"A config must be YAML text or a path, not {type(text_or_path).__name__}.")
    return text_or_path


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- the generic loader: mappings -> nested dataclasses, with paths in every error -------------------------
def build(cls: type, data: Any, path: str) -> Any:
    """Build dataclass ``cls`` from ``data``; errors name the key's full path."""
    where = path or "the config"
    if not isinstance(data, dict):
        raise BadInput(f"{where} must be a mapping of keys to values, not {type(data).__name__}.",
                       hint="Write it as `key: value` lines (see examples/generate.yaml).")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Known keys here: {', '.join(fields)}."
            raise BadInput(f"Unknown key {full!r} in the generation config.", hint=hint)
        kwargs[key] = _convert(hints[key], value, full)
    try:
        return cls(**kwargs)
    except BadInput as exc:
        if not path or exc.message.startswith(path):
            raise
        raise BadInput(f"{path}.{exc.message}", hint=exc.hint) from None
    except TypeError as exc:  # a dataclass we do not own refused a value
        raise BadInput(f"{where}: {exc}.", hint="Check the values' types against examples/generate.yaml.") from None


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path) if len(inner) == 1 else value
    if dataclasses.is_dataclass(hint):
        return build(hint, value if value is not None else {}, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise BadInput(f"{path}={value!r} must be a list.", hint=f"Write {path.rsplit('.', 1)[-1]}: [a, b].")
        item = args[0] if args else Any
        items = [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise BadInput(f"{path}={value!r} must be a mapping.", hint="Write it as `key: value` lines.")
        return dict(value)
    return _scalar(hint, value, path)


def _scalar(hint: Any, value: Any, path: str) -> Any:
    if hint is bool and not isinstance(value, bool):
        raise BadInput(f"{path}={value!r} must be true or false.")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise BadInput(f"{path}={value!r} must be a whole number.")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInput(f"{path}={value!r} must be a number.")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise BadInput(f"{path}={value!r} must be text.", hint="Quote it if YAML read it as something else.")
    return value


def field_help(cls: type = GenerationConfig, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(path, default, help) for every field, nested sections included (for docs and the page)."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            rows.append((path, None, f.metadata.get("help", "")))
            rows.extend(field_help(hint, path + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        rows.append((path, _plain(default), f.metadata.get("help", "")))
    return rows
