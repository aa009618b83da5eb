"""``GenerationConfig``: everything one generation run needs, as dataclasses loaded from YAML.

Why this shape (TRL's config habit): every field is documented once, in its ``metadata["help"]``,
and ``__post_init__`` validates; a ``BadInput`` names the field (its full path, such as
``responses.generators[0].sampling.temperature``), the value and the fix. Unknown YAML keys are
refused with a "did you mean" hint, so a typo never silently falls back to a default: types and the
bounds in each field's metadata are checked by the one spec loader (``core.specs``), and each
``__post_init__`` keeps only the rules between fields. The page, the CLI and the stored copy of a run's
config all go through ``from_yaml`` / ``to_yaml``.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.generate.preprocess import PreprocessConfig
from pipelines.llm.base import SamplingParams
from core.errors import BadInput, StudioError
from core.inputs import MAX_CONFIG_BYTES, load_yaml, read_text
from core.specs import bad_value, check_fields, load_spec, plain

METHODS = ("seeds", "self_instruct", "evol")
EVOL_OPERATIONS = ("deepen", "constraints", "concretize", "reasoning", "breadth")
JUDGE_KINDS = ("llm", "rubric")
JUDGE_MODES = ("pointwise", "pairwise", "listwise")
REPLY_FORMATS = ("json", "compact")
_TARGET = re.compile(r"^(endpoint|local):[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
DEFAULT_TARGET = "endpoint:embedded"


def _help(text: str, default: Any = MISSING, default_factory: Any = MISSING, **limits: Any) -> Any:
    """A field documented once; ``limits`` (min, max, gt, choices, max_len...) are checked by the loader."""
    return field(default=default, default_factory=default_factory, metadata={"help": text, **limits})


def _fail(name: str, value: Any, fix: str) -> None:
    raise bad_value(name, value, "is not valid", fix)


def check_target(name: str, value: Any) -> None:
    if not isinstance(value, str) or not _TARGET.match(value):
        _fail(name, value, "Use endpoint:<name> (an OpenAI-compatible endpoint) or local:<model> "
                           "(a registered transformers model), e.g. endpoint:embedded.")


@dataclass
class SamplingConfig:
    """Sampling settings of one generator; recorded with every output it makes."""

    temperature: float = _help("0 = greedy; higher = more varied (0 to 2).", default=0.7, min=0, max=2)
    top_p: float = _help("Nucleus sampling mass (above 0, at most 1).", default=1.0, gt=0, max=1)
    max_tokens: int = _help("Most new tokens per answer (1 to 32768).", default=256, min=1, max=32768)
    seed: int | None = _help("Random seed; candidate k of a prompt uses seed + k, so candidates differ "
                             "and each one is still cached. Empty = 0 when several candidates are asked.",
                             default=None, min=0, max=2**31 - 1)

    def __post_init__(self):
        check_fields(self)

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
    limit: int | None = _help("Use at most this many seeds (in import order); empty = all.", default=None,
                              min=1, max=10_000_000)

    def __post_init__(self):
        check_fields(self)
        given = [n for n, v in (("seed_set", self.seed_set), ("texts", self.texts), ("file", self.file)) if v]
        if len(given) != 1:
            raise BadInput(f"seeds gives {', '.join(given) or 'no source'}.",
                           hint="Give exactly one of seeds.seed_set, seeds.texts or seeds.file.")
        if not all(t.strip() for t in self.texts):
            _fail("texts", self.texts, "Give a list of non-empty seed tasks.")


@dataclass
class InstructionsConfig:
    """How instructions are made from the seeds."""

    method: str = _help("'seeds' (the seeds are the instructions), 'self_instruct' (an LLM writes new tasks "
                        "from each seed) or 'evol' (Evol-Instruct rewrites each seed).", default="self_instruct",
                        choices=METHODS)
    per_seed: int = _help("Instructions per seed (self_instruct: tasks asked for; evol: operations applied, "
                          "at most the number of evol_operations).", default=2, min=1, max=50)
    evol_operations: list[str] = _help("Evol-Instruct operations to use: deepen, constraints, concretize, "
                                       "reasoning, breadth.", default_factory=lambda: list(EVOL_OPERATIONS),
                                       choices=EVOL_OPERATIONS)
    evol_rounds: int = _help("Evol-Instruct rounds: round k evolves round k-1's output again (1 to 5).", default=1,
                             min=1, max=5)
    generator: str = _help("Target that writes instructions: endpoint:<name> or local:<model>.",
                           default=DEFAULT_TARGET)
    sampling: SamplingConfig = _help("Sampling for instruction writing.",
                                     default_factory=lambda: SamplingConfig(temperature=0.8, max_tokens=256))
    templates: dict[str, str] = _help("Prompt template overrides by kind (self_instruct, evol:deepen, ...); "
                                      "see pipelines/generate/templates.py for the defaults.",
                                      default_factory=dict)

    def __post_init__(self):
        from pipelines.generate.templates import check_template

        check_fields(self)
        if not self.evol_operations or len(set(self.evol_operations)) != len(self.evol_operations):
            _fail("evol_operations", self.evol_operations,
                  f"List each operation once, from: {', '.join(EVOL_OPERATIONS)}.")
        if self.method == "evol" and self.per_seed > len(self.evol_operations):
            _fail("per_seed", self.per_seed, f"With method 'evol' each seed gets one instruction per operation: "
                                             f"use at most {len(self.evol_operations)} or list more evol_operations.")
        check_target("generator", self.generator)
        for kind, text in self.templates.items():
            check_template(kind, text, f"templates[{kind!r}]")


@dataclass
class GeneratorConfig:
    """One model that answers the instructions."""

    target: str = _help("endpoint:<name> or local:<model>.", default=DEFAULT_TARGET)
    candidates: int = _help("Candidate responses per instruction from this model (1 to 16).", default=2,
                            min=1, max=16)
    sampling: SamplingConfig = _help("Sampling for this model's responses.", default_factory=SamplingConfig)

    def __post_init__(self):
        check_fields(self)
        check_target("target", self.target)


@dataclass
class ResponsesConfig:
    """Who answers the instructions, and how many times."""

    generators: list[GeneratorConfig] = _help("The models that answer; each gives `candidates` responses.",
                                              default_factory=lambda: [GeneratorConfig()])
    system_prompt: str | None = _help("System message sent before each instruction (optional).", default=None)

    def __post_init__(self):
        check_fields(self)
        if not self.generators:
            _fail("generators", self.generators, "List at least one generator with a target.")
        targets = [g.target for g in self.generators]
        if len(set(targets)) != len(targets):
            _fail("generators", targets, "List each target once; raise its `candidates` for more samples.")


@dataclass
class RubricConfig:
    """A programmatic judge (see pipelines/judge/rubrics.py for the names and their params)."""

    name: str = _help("Rubric name: answer_quality (any prose answer; works with defaults), length, json_format, "
                      "regex, keywords, reference_match.", default="answer_quality")
    params: dict[str, Any] = _help("The rubric's parameters.", default_factory=dict)


@dataclass
class JudgeSection:
    """Who labels the candidates, and how pairs are chosen."""

    kind: str = _help("'llm' (a model rates each candidate) or 'rubric' (a Python rubric).", default="llm",
                      choices=JUDGE_KINDS)
    target: str = _help("The judge model (llm kind): endpoint:<name> or local:<model>.", default=DEFAULT_TARGET)
    mode: str = _help("'listwise' (one call rates all candidates of an instruction, in a shuffled order, and "
                      "judges again in reversed order when the best and the worst are close), 'pointwise' (one "
                      "call per candidate) or 'pairwise' (pointwise, then the best and the worst compared in both "
                      "orders to cancel position bias). With kind 'rubric' it is 'pointwise'.", default="listwise",
                      choices=JUDGE_MODES)
    aspects: list[str] | None = _help("Aspects rated 1-5; empty = the judge's defaults (helpfulness, honesty, "
                                      "instruction-following, truthfulness).", default=None, min_len=1)
    pointwise_template: str | None = _help("Pointwise judge prompt override (empty = default).", default=None)
    pairwise_template: str | None = _help("Pairwise judge prompt override (empty = default).", default=None)
    listwise_template: str | None = _help("Listwise judge prompt override (empty = default).", default=None)
    reply_format: str = _help("'json' (scores per aspect with a rationale) or 'compact' (one digit or one letter per "
                              "verdict, for judges too small to write JSON, e.g. the embedded 135M model).",
                              default="json", choices=REPLY_FORMATS)
    swap_margin: float | None = _help("Listwise: judge again in reversed order when the best and the worst "
                                      "candidate are at most this many points apart (0 to 4); empty = never.",
                                      default=1.0, min=0, max=4)
    temperature: float = _help("Judge sampling temperature (0 to 2).", default=0.0, min=0, max=2)
    max_tokens: int = _help("Most tokens of a judge reply (16 to 8192).", default=400, min=16, max=8192)
    repair: bool = _help("Send one repair prompt when a reply is not valid JSON.", default=True)
    rubric: RubricConfig = _help("The rubric, when kind is 'rubric'.", default_factory=RubricConfig)
    min_sft_score: float | None = _help("An instruction's best candidate becomes an SFT pair when its overall "
                                        "score is at least this (1 to 5); empty = no SFT pairs.", default=4.0,
                                        min=1, max=5)

    def __post_init__(self):
        check_fields(self)
        if self.kind == "rubric" and self.mode == "listwise":
            self.mode = "pointwise"   # the default mode; a rubric scores each candidate alone
        if self.kind == "rubric" and self.mode != "pointwise":
            _fail("mode", self.mode, "A rubric scores each candidate alone: use mode 'pointwise' with kind 'rubric'.")
        custom = [n for n in ("pointwise_template", "pairwise_template", "listwise_template") if getattr(self, n)]
        if self.reply_format == "compact" and custom:
            raise BadInput(f"{custom[0]} is set, but reply_format 'compact' uses its built-in short prompts.",
                           hint=f"Remove {custom[0]}, or use reply_format 'json'.")
        if self.kind == "llm":
            check_target("target", self.target)
        else:
            from pipelines.judge.rubrics import get_rubric

            try:  # an unknown rubric or bad params are refused now, not half-way through a run
                get_rubric(self.rubric.name).check_params(self.rubric.params, path="rubric.params")
            except BadInput:
                raise
            except StudioError as exc:
                raise BadInput(f"rubric: {exc.message}", hint=exc.hint) from None
        if self.aspects is not None and not self.aspects:
            _fail("aspects", self.aspects, "List aspect names, or leave it empty for the defaults.")


@dataclass
class GenerationConfig:
    """A whole run: seeds -> instructions -> responses -> judge -> SFT and preference pairs."""

    name: str = _help("A name for the run (shown in lists).", default="generation", max_len=100)
    seeds: SeedsConfig = _help("Where the seed tasks come from.",
                               default_factory=lambda: SeedsConfig(texts=["Explain what a hash map is."]))
    instructions: InstructionsConfig = _help("How instructions are made.", default_factory=InstructionsConfig)
    responses: ResponsesConfig = _help("Who answers the instructions.", default_factory=ResponsesConfig)
    judge: JudgeSection = _help("Who labels the candidates.", default_factory=JudgeSection)
    preprocess: PreprocessConfig = _help("Cleaning applied to instructions, then to responses (near-duplicates "
                                         "only within one instruction's candidates).",
                                         default_factory=PreprocessConfig)
    batch_size: int = _help("Items per batch: each batch is one round of concurrent calls and one "
                            "transaction (1 to 1024).", default=32, min=1, max=1024)
    concurrency: int | None = _help("Concurrent calls per endpoint; empty = the endpoint's own setting (1 to 256).",
                                    default=None, min=1, max=256)

    def __post_init__(self):
        check_fields(self)
        if not self.name.strip():
            _fail("name", self.name, "Use a non-empty name of at most 100 characters.")

    # -- YAML ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> "GenerationConfig":
        return load_spec(cls, data, label="the generation config")

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> "GenerationConfig":
        """Parse YAML text, or read a ``.yaml``/``.yml`` file when given a path."""
        data = load_yaml(_read_yaml_source(text_or_path), "generation config")  # size, depth and alias caps
        if data is None:
            raise BadInput("The generation config is empty.", hint="Start from examples/generate.yaml.")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

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
        return read_text(text_or_path, "config file", MAX_CONFIG_BYTES)  # a regular UTF-8 file under the cap
    if not isinstance(text_or_path, str):
        raise BadInput(f"A config must be YAML text or a path, not {type(text_or_path).__name__}.")
    return text_or_path
