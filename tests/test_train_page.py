"""AppTests for the Train page: empty home, the snapshot checks and create, the run form (presets,
help text, effective batch, estimate), and a run started from the page on the tiny model.

State is set up through the services; actions go through real widgets. The run test starts a real
training job process (``python -m studio train --run RUN``) on the tiny 2-layer Llama on CPU.
"""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from storage.db import get_database
from storage.pairs import insert_preference_pairs
from studio.services import snapshots as snap_svc
from studio.services import training as train_svc
from tests.apptest_helpers import page_with_tab, rerun, texts, widget
from tests.fixtures.core import REPO_ROOT
from tests.fixtures.tiny import preference_rows

TRAIN = REPO_ROOT / "pages" / "train.py"
TIMEOUT_S = 60


def open_page(tab: str) -> AppTest:
    return page_with_tab(TRAIN, tab, TIMEOUT_S)


@pytest.fixture
def ready(tiny_training_home):
    return tiny_training_home


def test_renders_in_an_empty_home_and_says_what_to_do(studio_home):
    at = open_page("Data")
    assert [t.label for t in at.tabs] == ["Data", "New run", "Runs"]
    assert "No snapshots yet" in texts(at)
    assert "Check data" in [b.label for b in at.button]
    at.query_params["tab"] = "New run"
    assert "A run needs a snapshot" in texts(rerun(at))
    at.query_params["tab"] = "Runs"
    assert "No runs yet" in texts(rerun(at))


def test_check_data_shows_counts_and_blocking_check_then_create(studio_home):
    at = open_page("Data")
    widget(at.button, "Check data").click()
    at = rerun(at)
    assert "0 preference rows remain after the filters; training needs at least 2" in texts(at)
    widget(at.button, "Create snapshot").click()
    assert "training needs at least 2" in "\n".join(e.value for e in rerun(at).error)
    insert_preference_pairs(get_database(), preference_rows(12))
    widget(at.button, "Check data").click()
    at = rerun(at)
    assert "**11** to train, **1** to evaluate (not stored yet)" in texts(at)
    assert "length_bias" in texts(at) and "The chosen response is the longer one in 100%" in texts(at)
    widget(at.button, "Create snapshot").click()
    at = rerun(at)
    assert any("created." in s.value for s in at.success), texts(at)
    assert [s.n_train for s in snap_svc.list_snapshots()] == [11]


def test_run_form_has_presets_help_and_the_estimate(ready):
    at = open_page("New run")
    assert widget(at.selectbox, "Preset").value == "cpu_smoke_test"
    lr = widget(at.number_input, "learning rate")
    assert lr.value == pytest.approx(1e-4) and "learning rate" in lr.help.lower()
    assert widget(at.number_input, "max steps").value == 8
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Effective batch"] == "2" and metrics["Optimizer steps"] == "8"
    assert metrics["Time (rough)"].endswith("s")
    widget(at.number_input, "gradient accumulation steps").set_value(3)
    at = rerun(at)
    assert {m.label: m.value for m in at.metric}["Effective batch"] == "6"
    widget(at.number_input, "Processes").set_value(2)          # 2 data-parallel processes: twice the batch
    at = rerun(at)
    assert {m.label: m.value for m in at.metric}["Effective batch"] == "12"
    widget(at.selectbox, "Preset").set_value("lora_one_gpu")
    at = rerun(at)
    assert widget(at.number_input, "per device train batch size").value == 8
    assert "python -m studio train RUN.yaml" in texts(at)


def test_the_form_shows_only_the_chosen_recipes_fields(ready):
    """One parameter class per algorithm: a DPO form has beta and no kl_coef; help text from the field."""
    at = open_page("New run")
    online = {"kl coef", "num generations", "max prompt length"}
    # a preference snapshot proposes the recipes that learn from preference data, DPO first
    assert widget(at.selectbox, "Recipe").value == "dpo" and "sft: sft" in widget(at.selectbox, "Recipe").options[1:]
    widget(at.selectbox, "Recipe").set_value("sft")
    at = rerun(at)
    assert not {w.label for w in at.number_input} & (online | {"beta"})
    widget(at.selectbox, "Recipe").set_value("dpo")
    at = rerun(at)
    assert "beta" in {w.label for w in at.number_input} and not {w.label for w in at.number_input} & online
    assert "DPO temperature" in widget(at.number_input, "beta").help
    widget(at.selectbox, "Recipe").set_value("grpo")
    at = rerun(at)
    assert online <= {w.label for w in at.number_input} and "beta" not in {w.label for w in at.number_input}


def test_an_invalid_hyperparameter_names_the_field_and_range(ready):
    at = open_page("New run")
    widget(at.number_input, "warmup ratio").set_value(0.9)
    at = rerun(at)
    assert "hyper.warmup_ratio=0.9 is out of range" in "\n".join(e.value for e in at.error)
    assert "Start training" not in [b.label for b in at.button]


def test_starting_a_run_from_the_page_trains_the_tiny_model(ready):
    at = open_page("New run")
    widget(at.text_input, "Run name").input("from-page")
    widget(at.number_input, "max steps").set_value(2)
    widget(at.number_input, "max length").set_value(64)       # the SFT form: no max prompt length
    widget(at.button, "Start training").click()
    at = rerun(at)
    assert any("Started run" in s.value for s in at.success), texts(at)
    (run,) = train_svc.list_runs()
    deadline = time.monotonic() + 240
    while train_svc.get_run(run.id).status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
    run = train_svc.get_run(run.id)
    assert run.status == "succeeded", run.error
    at.query_params["tab"] = "Runs"
    at = rerun(at)
    table = at.dataframe[0].value
    assert list(table["status"]) == ["succeeded"] and list(table["run"]) == ["from-page"]
    assert "**loss**" in texts(at) and "Lineage: snapshot → records → generation runs" in [e.label for e in at.expander]
    assert widget(at.button, "Resume").disabled and widget(at.button, "Cancel").disabled


def test_the_peft_method_shows_its_own_fields_and_monitoring_goes_into_the_spec(ready):
    """ReFT's form has rank, layers and positions (no LoRA target modules); the chosen loggers are report_to."""
    at = open_page("New run")
    assert "target modules" in {w.label for w in at.text_input} and "positions" not in {w.label for w in at.text_input}
    widget(at.selectbox, "method").set_value("reft")
    at = rerun(at)
    assert {"layers", "positions"} <= {w.label for w in at.text_input} and "target modules" not in \
        {w.label for w in at.text_input}
    assert "subspace ReFT edits" in widget(at.number_input, "r").help
    assert "pyreft's notation" in widget(at.text_input, "positions").help
    widget(at.text_input, "layers").input("0, 1")
    widget(at.text_input, "positions").input("f2+l2")
    assert set(widget(at.multiselect, "Monitoring").options) == {"tensorboard", "wandb", "mlflow"}
    widget(at.multiselect, "Monitoring").set_value(["tensorboard", "mlflow"])
    at = rerun(at)
    spec = next(c.value for c in at.code if "recipe:" in c.value)
    assert "method: reft" in spec and "layers:\n  - 0\n  - 1" in spec and "positions: f2+l2" in spec
    assert "report_to:\n- tensorboard\n- mlflow" in spec
    widget(at.text_input, "positions").input("middle")
    assert "peft.positions='middle' is not fN, lN or fN+lN" in "\n".join(e.value for e in rerun(at).error)
