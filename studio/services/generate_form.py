"""What the Generate page's Configure tab needs: the typed config it edits, the choices its widgets
offer (Evol-Instruct operations, judge aspects, rubrics) and the default prompt texts shown for
editing.

Why a service: pages may not import ``pipelines``; the widgets and the YAML config read the same
definitions, so they never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.generate.config import EVOL_OPERATIONS, GenerationConfig
from pipelines.judge.compact import SMALL_JUDGE_EXPECTATION
from pipelines.judge.prompts import (ASPECTS, DEFAULT_LISTWISE_TEMPLATE, DEFAULT_PAIRWISE_TEMPLATE,
                                              DEFAULT_POINTWISE_TEMPLATE)
from pipelines.judge.rubrics import get_rubric, list_rubrics
from pipelines.generate.templates import DEFAULTS as INSTRUCTION_TEMPLATES
from core.specs import FieldDoc, describe_fields
from studio import access

__all__ = ["ASPECTS", "DEFAULT_LISTWISE_TEMPLATE", "DEFAULT_PAIRWISE_TEMPLATE", "DEFAULT_POINTWISE_TEMPLATE",
           "EVOL_OPERATIONS", "GenerationConfig", "INSTRUCTION_TEMPLATES", "SMALL_JUDGE_EXPECTATION",
           "RubricForm", "check_rubric_params", "list_rubrics", "rubric_form"]


@dataclass(frozen=True)
class RubricForm:
    """What a page needs to show a rubric's parameters as a form (Generate, Compare, Train)."""

    name: str
    description: str
    fields: list[FieldDoc]          # from the rubric's params dataclass: name, kind, default, help, choices
    start: dict[str, Any]           # valid values to start the form from (defaults, or the rubric's example)


def rubric_form(name: str) -> RubricForm:
    rubric = get_rubric(name)
    fields = describe_fields(rubric.params_type) if rubric.params_type else []
    start = {f.name: f.default for f in fields}
    return RubricForm(rubric.name, rubric.description, fields, {**start, **rubric.example})


def check_rubric_params(name: str, params: dict) -> None:
    """Raise the rubric's own BadInput when ``params`` do not fit rubric ``name``."""
    get_rubric(name).check_params(params)


# Who may call what (team mode): changes need an admin, reads any signed-in person (studio/access.py).
access.guard_module(globals())
