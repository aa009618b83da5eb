"""The example configs the README and the CLI hints point to stay valid as the specs change."""

from __future__ import annotations

import yaml

from pipelines.compare.spec import ComparisonSpec
from pipelines.generate.config import GenerationConfig
from pipelines.train.spec import RunSpec
from tests.fixtures.core import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"


def test_train_example_is_a_valid_run_spec():
    spec = RunSpec.from_yaml(EXAMPLES / "train.yaml")
    assert spec.recipe == "dpo" and spec.peft.method == "lora" and spec.evaluation["judge"]["kind"] == "rubric"


def test_compare_example_is_a_valid_comparison_and_its_prompts_exist():
    spec = ComparisonSpec.from_dict(yaml.safe_load((EXAMPLES / "compare.yaml").read_text()))
    assert len(spec.models) == 2
    assert (REPO_ROOT / spec.prompt_source_id).is_file()


def test_generate_example_is_a_valid_generation_config():
    config = GenerationConfig.from_yaml((EXAMPLES / "generate.yaml").read_text())
    assert config.judge is not None
