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
from core.specs import check_fields, load_spec

DEFAULT_SAMPLING = {"temperature": 0.0, "max_tokens": 256, "seed": 0}
LABEL = "the comparison config"


@dataclass(frozen=True)
class PromptsBlock:
    """The YAML form of the prompt set, ``prompts: {source: upload, path: FILE}``; it fills the flat fields."""

    source: str = field(default="upload", metadata={"help": "prompt_source.", "choices": SOURCES})
    id: str | None = field(default=None, metadata={"help": "prompt_source_id: a snapshot or a generation run."})
    path: str | None = field(default=None, metadata={"help": "prompt_source_id: the uploaded file."})
    text_column: str = field(default="prompt", metadata={"help": "The column with the prompt."})
    reference_column: str | None = field(default=None, metadata={"help": "A column with reference answers."})
    metadata_columns: tuple[str, ...] = field(default=(), metadata={"help": "Columns kept for slices."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first N prompts.", "min": 1})

    def flat(self, given: Any) -> dict[str, Any]:
        """The flat fields: the source always, the others where the block gives them."""
        out = {"prompt_source": self.source, "prompt_source_id": self.id or self.path}
        out.update({k: getattr(self, k) for k in ("text_column", "reference_column", "metadata_columns", "limit")
                    if k in given})
        return out


@dataclass(frozen=True)
class ComparisonSpec:
    models: tuple[str, ...] = field(metadata={"help": "Two or more targets: local:NAME or endpoint:NAME."})
    prompt_source: str = field(default="upload", metadata={"help": f"One of {SOURCES}.", "choices": SOURCES})
    prompt_source_id: str | None = field(default=None, metadata={
        "help": "The snapshot id, the generation run id, or the uploaded file's path."})
    name: str | None = field(default=None, metadata={"help": "A name to recognise the comparison by."})
    text_column: str = field(default="prompt", metadata={"help": "Upload: the column with the prompt."})
    reference_column: str | None = field(default=None, metadata={"help": "Upload: a column with reference answers."})
    metadata_columns: tuple[str, ...] = field(default=(), metadata={"help": "Upload: columns kept for slices."})
    limit: int | None = field(default=None, metadata={"help": "Use only the first N prompts.", "min": 1})
    sampling: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SAMPLING), metadata={
        "help": "Sampling settings for every model (temperature, top_p, max_tokens, seed, stop)."})
    judge: dict[str, Any] | None = field(default=None, metadata={"help": "Judge settings (see JudgeSpec); empty = humans only."})
    reward_model: str | None = field(default=None, metadata={"help": "A registered reward model scoring each answer."})
    context_tokens: dict[str, int] = field(default_factory=dict, metadata={
        "help": "Context size per target where the studio cannot read it (endpoints), e.g. {endpoint:x: 4096}.",
        "min": 32})
    training_run_id: str | None = field(default=None, metadata={"help": "Set for a training run's evaluation."})

    def __post_init__(self):
        check_fields(self)
        if len(set(self.models)) != len(self.models):
            raise BadInput(f"models lists a model twice: {list(self.models)}.", hint="List each model once.")
        if len(self.models) < 2:
            raise BadInput(f"A comparison needs at least two models; got {len(self.models)}.",
                           hint="Add another model, e.g. the base model or an endpoint.")
        if not self.prompt_source_id:
            raise BadInput(f"No prompt set given for source {self.prompt_source!r}.",
                           hint="Give the snapshot id, the generation run id or the file path.")
        object.__setattr__(self, "sampling", {**DEFAULT_SAMPLING, **self.sampling})
        self.sampling_params()
        JudgeSpec.from_dict(self.judge)

    def sampling_params(self) -> SamplingParams:
        return load_spec(SamplingParams, self.sampling, label=LABEL, path="sampling")

    def judge_spec(self) -> JudgeSpec | None:
        return JudgeSpec.from_dict(self.judge)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["models"], out["metadata_columns"] = list(self.models), list(self.metadata_columns)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ComparisonSpec":
        """From the flat form (``to_dict``) or the YAML form with a ``prompts:`` block."""
        if isinstance(data, dict) and data.get("prompts") is not None:
            data = dict(data)
            block = data.pop("prompts")
            data.update(load_spec(PromptsBlock, block, label=LABEL, path="prompts").flat(block))
        elif isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "prompts"}
        return load_spec(cls, data, label=LABEL)

    @classmethod
    def from_yaml(cls, path: Path) -> "ComparisonSpec":
        from core.inputs import read_yaml

        data = read_yaml(path, "comparison config") or {}  # a regular UTF-8 file; size, depth and alias caps
        spec = cls.from_dict(data)
        if spec.prompt_source == "upload" and not Path(spec.prompt_source_id).is_absolute():
            # a relative prompt file is relative to the config, not to wherever the command runs
            object.__setattr__(spec, "prompt_source_id", str((path.parent / spec.prompt_source_id).resolve()))
        return spec
