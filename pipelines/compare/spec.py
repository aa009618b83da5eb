"""What a comparison is: its models, prompt set, sampling settings, judge and reward model.

Written as a config dataclass (like TRL's configs): every field documented once in its metadata,
``__post_init__`` validates and names the field, the value and the fix. ``from_dict`` reads the
YAML of ``python -m studio compare CONFIG.yaml``::

    name: tuned vs base
    models: [local:base, local:tuned, endpoint:embedded]
    prompts: {source: upload, path: prompts.jsonl, text_column: prompt, reference_column: answer}
    sampling: {temperature: 0, max_tokens: 128, seed: 0}
    judge: {kind: llm, target: endpoint:judge, length_controlled: true}
    reward_model: my-reward-model
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pipelines.compare.judging import JudgeSpec
from pipelines.compare.prompts import SOURCES
from pipelines.llm.base import SamplingParams
from core.errors import BadInput

DEFAULT_SAMPLING = {"temperature": 0.0, "max_tokens": 256, "seed": 0}
PROMPT_KEYS = ("source", "id", "path", "text_column", "reference_column", "metadata_columns", "limit")


@dataclass(frozen=True)
class ComparisonSpec:
    models: tuple[str, ...] = field(metadata={"help": "Two or more targets: local:NAME or endpoint:NAME."})
    prompt_source: str = field(default="upload", metadata={"help": f"One of {SOURCES}."})
    prompt_source_id: str | None = field(default=None, metadata={
        "help": "The snapshot id, the generation run id, or the uploaded file's path."})
    name: str | None = field(default=None, metadata={"help": "A name to recognise the comparison by."})
    text_column: str = field(default="prompt", metadata={"help": "Upload: the column with the prompt."})
    reference_column: str | None = field(default=None, metadata={"help": "Upload: a column with reference answers."})
    metadata_columns: tuple[str, ...] = field(default=(), metadata={"help": "Upload: columns kept for slices."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first N prompts."})
    sampling: dict = field(default_factory=lambda: dict(DEFAULT_SAMPLING), metadata={
        "help": "Sampling settings for every model (temperature, top_p, max_tokens, seed, stop)."})
    judge: dict | None = field(default=None, metadata={"help": "Judge settings (see JudgeSpec); empty = humans only."})
    reward_model: str | None = field(default=None, metadata={"help": "A registered reward model scoring each answer."})
    context_tokens: dict = field(default_factory=dict, metadata={
        "help": "Context size per target where the studio cannot read it (endpoints), e.g. {endpoint:x: 4096}."})
    training_run_id: str | None = field(default=None, metadata={"help": "Set for a training run's evaluation."})

    def __post_init__(self):
        models = self.models
        if isinstance(models, str) or not isinstance(models, (list, tuple)):
            raise BadInput(f"models={models!r} is not a list.", hint="List two or more targets, e.g. [local:a, local:b].")
        object.__setattr__(self, "models", tuple(models))
        if len(set(self.models)) != len(self.models):
            raise BadInput(f"models lists a model twice: {list(self.models)}.", hint="List each model once.")
        if len(self.models) < 2:
            raise BadInput(f"A comparison needs at least two models; got {len(self.models)}.",
                           hint="Add another model, e.g. the base model or an endpoint.")
        if self.prompt_source not in SOURCES:
            raise BadInput(f"prompt_source={self.prompt_source!r} is not known.", hint=f"Use one of {list(SOURCES)}.")
        if not self.prompt_source_id:
            raise BadInput(f"No prompt set given for source {self.prompt_source!r}.",
                           hint="Give the snapshot id, the generation run id or the file path.")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1):
            raise BadInput(f"limit={self.limit!r} is not a positive whole number.", hint="Use e.g. 100, or leave it empty.")
        object.__setattr__(self, "metadata_columns", tuple(self.metadata_columns or ()))
        object.__setattr__(self, "sampling", {**DEFAULT_SAMPLING, **(self.sampling or {})})
        self.sampling_params()
        JudgeSpec.from_dict(self.judge)
        for target, size in (self.context_tokens or {}).items():
            if isinstance(size, bool) or not isinstance(size, int) or size < 32:
                raise BadInput(f"context_tokens[{target!r}]={size!r} is not a context size.", hint="Use e.g. 4096.")

    def sampling_params(self) -> SamplingParams:
        known = {f.name for f in fields(SamplingParams)}
        unknown = sorted(set(self.sampling) - known)
        if unknown:
            raise BadInput(f"sampling has an unknown key {unknown[0]!r}.", hint=f"Known keys: {sorted(known)}.")
        values = dict(self.sampling)
        if values.get("stop"):
            values["stop"] = tuple(values["stop"])
        return SamplingParams(**values)

    def judge_spec(self) -> JudgeSpec | None:
        return JudgeSpec.from_dict(self.judge)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["models"], out["metadata_columns"] = list(self.models), list(self.metadata_columns)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ComparisonSpec":
        """From the flat form (``to_dict``) or the YAML form with a ``prompts:`` block."""
        if not isinstance(data, dict):
            raise BadInput("The comparison config is not a mapping.", hint="Write it as YAML keys: models, prompts, ...")
        data = dict(data)
        prompts = data.pop("prompts", None)
        if prompts is not None:
            if not isinstance(prompts, dict):
                raise BadInput("prompts is not a mapping.", hint="Write prompts: {source: upload, path: FILE}.")
            unknown = sorted(set(prompts) - set(PROMPT_KEYS))
            if unknown:
                raise BadInput(f"prompts has an unknown key {unknown[0]!r}.", hint=f"Known keys: {list(PROMPT_KEYS)}.")
            data["prompt_source"] = prompts.get("source", "upload")
            data["prompt_source_id"] = prompts.get("id") or prompts.get("path")
            for key in ("text_column", "reference_column", "metadata_columns", "limit"):
                if key in prompts:
                    data[key] = prompts[key]
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInput(f"The comparison config has an unknown key {unknown[0]!r}.", hint=f"Known keys: {sorted(known)}.")
        if "models" not in data:
            raise BadInput("The comparison config lists no models.", hint="Add models: [local:a, local:b].")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: Path) -> "ComparisonSpec":
        import yaml

        if not path.is_file():
            raise BadInput(f"The config {path} does not exist.", hint="Give the path of a comparison YAML file.")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise BadInput(f"{path} is not valid YAML: {str(exc).splitlines()[0]}", hint="Fix the YAML syntax.") from None
        spec = cls.from_dict(data)
        if spec.prompt_source == "upload" and not Path(spec.prompt_source_id).is_absolute():
            # a relative prompt file is relative to the config, not to wherever the command runs
            object.__setattr__(spec, "prompt_source_id", str((path.parent / spec.prompt_source_id).resolve()))
        return spec
