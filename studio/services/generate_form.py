"""What the Generate page's Configure tab needs: the typed config it edits, the choices its widgets
offer (Evol-Instruct operations, judge aspects, rubrics) and the default prompt texts shown for
editing.

Why a service: pages may not import ``pipelines``; the widgets and the YAML config read the same
definitions, so they never disagree.
"""

from __future__ import annotations

from pipelines.generate.config import EVOL_OPERATIONS, GenerationConfig
from pipelines.judge.compact import SMALL_JUDGE_EXPECTATION
from pipelines.judge.prompts import (ASPECTS, DEFAULT_LISTWISE_TEMPLATE, DEFAULT_PAIRWISE_TEMPLATE,
                                              DEFAULT_POINTWISE_TEMPLATE)
from pipelines.judge.rubrics import get_rubric, list_rubrics
from pipelines.generate.templates import DEFAULTS as INSTRUCTION_TEMPLATES

__all__ = ["ASPECTS", "DEFAULT_LISTWISE_TEMPLATE", "DEFAULT_PAIRWISE_TEMPLATE", "DEFAULT_POINTWISE_TEMPLATE",
           "EVOL_OPERATIONS", "GenerationConfig", "INSTRUCTION_TEMPLATES", "SMALL_JUDGE_EXPECTATION",
           "check_rubric_params", "list_rubrics"]


def check_rubric_params(name: str, params: dict) -> None:
    """Raise the rubric's own BadInput when ``params`` do not fit rubric ``name``."""
    get_rubric(name).check_params(params)
