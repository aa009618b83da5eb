"""Adding a training algorithm is one new file plus one registration line: a new module (here IPO, DPO's
trainer with the identity preference loss) registered in a fresh interpreter is a recipe the spec loads,
the form proposes for preference data with only its own fields, and the runner trains."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pipelines.train.registry import ALGORITHMS, PARAMS, RECIPES, Algorithm, register, register_recipe

NEW_FILE = '''
from dataclasses import dataclass

from pipelines.train.algorithms.common import base_args, run_trainer
from pipelines.train.algorithms.dpo import reference_model
from pipelines.train.data import to_dataset
from pipelines.train.modeling import hidden_size, load_causal_lm, load_tokenizer, peft_config
from pipelines.train.params import DPOParams


@dataclass
class IPOParams(DPOParams):
    """Identity preference optimisation: DPO's trainer with the IPO loss (beta is its regularisation)."""


def train(inp):
    from trl import DPOConfig, DPOTrainer

    tokenizer = load_tokenizer(inp.model_path, inp.warnings)
    model = load_causal_lm(inp.model_path, inp.hyper, inp.peft, inp.precision, tokenizer.pad_token_id)
    args = DPOConfig(**base_args(inp), beta=inp.hyper.beta, max_length=inp.hyper.max_length, loss_type=["ipo"])
    trainer = DPOTrainer(model=model, ref_model=reference_model(inp, tokenizer.pad_token_id, model), args=args,
                         train_dataset=to_dataset(inp.train_rows), processing_class=tokenizer,
                         peft_config=peft_config(inp.peft, hidden_size=hidden_size(inp.model_path)),
                         callbacks=inp.callbacks)
    return run_trainer(trainer, inp)
'''

SCRIPT = '''
import json, sys
sys.path.insert(0, sys.argv[1])
from pipelines.train.registry import Algorithm, register
register(Algorithm("ipo", "studio_ext.ipo", "studio_ext.ipo:IPOParams", ("preference",), cost=2.7, sft_first=True))  # the line

from pathlib import Path
from pipelines.train.spec import RunSpec, STAGE_DATA
from studio.services import training_form as form
from pipelines.train.algorithms import StageInput, trainer_for
from pipelines.train.data import rows_for_stage
from pipelines.train.params import PeftSpec

spec = RunSpec.from_dict({"name": "x", "recipe": "ipo", "base_model": "tiny", "snapshot_id": "s",
                          "include_sft": True, "hyper": {"beta": 0.2, "max_steps": 2}})
rows = [{"prompt": [{"role": "user", "content": f"Q{i}?"}], "chosen": [{"role": "assistant", "content": "Yes."}],
         "rejected": [{"role": "assistant", "content": "Rain fell all night."}]} for i in range(4)]
hyper = spec.hyper_for("ipo")
hyper.per_device_train_batch_size = 2
hyper.max_length = 32
hyper.precision = "fp32"
out = Path(sys.argv[2])
result = trainer_for("ipo")(StageInput(stage="ipo", model_path=Path(sys.argv[3]), output_dir=out / "ck",
                                       final_dir=out / "final", hyper=hyper, peft=PeftSpec(), precision="fp32",
                                       cuda=False, train_rows=rows_for_stage("ipo", "preference", rows)))
print(json.dumps({"stages": list(spec.stages), "class": type(spec.hyper).__name__, "beta": spec.hyper.beta,
                  "data": STAGE_DATA["ipo"], "proposed": "ipo" in form.recipes_for("preference"),
                  "not_for_sft": "ipo" not in form.recipes_for("sft"),
                  "fields": sorted(f.name for f in form.form_fields("hyper", "ipo")),
                  "final": str(result.final_dir), "saved": (result.final_dir / "config.json").exists()
                  or any(result.final_dir.glob("adapter_config.json"))}))
'''


def test_a_new_algorithm_is_one_file_and_one_registration_line(tiny_model_dir, tmp_path):
    (tmp_path / "studio_ext").mkdir()
    (tmp_path / "studio_ext" / "__init__.py").write_text("")
    (tmp_path / "studio_ext" / "ipo.py").write_text(textwrap.dedent(NEW_FILE))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(tmp_path / "out"), str(tiny_model_dir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["stages"] == ["sft", "ipo"] and seen["class"] == "IPOParams" and seen["beta"] == 0.2, seen
    assert seen["data"] == ["preference"] and seen["proposed"] and seen["not_for_sft"], seen
    assert seen["saved"], seen
    assert "beta" in seen["fields"] and "kl_coef" not in seen["fields"], seen


def test_registering_a_name_twice_or_an_unknown_stage_is_refused():
    before = (dict(ALGORITHMS), dict(RECIPES))
    with pytest.raises(ValueError, match="registered twice"):
        register(Algorithm("dpo", "dpo", PARAMS["dpo"], ("preference",)))
    with pytest.raises(ValueError, match="unknown stages"):
        register_recipe("chain", ("sft", "nope"))
    assert (dict(ALGORITHMS), dict(RECIPES)) == before
