"""The alignment demo's chain on the tiny model: wiring and lineage, not the win rate (the real
figures come from `python -m studio demo` on SmolLM2; see docs/demo.md)."""

from __future__ import annotations

import json
import time

import pytest

from storage import compare as compare_store
from storage import training as run_store
from storage.db import get_database
from studio import cli
from core.errors import BadInput
from studio.services import demo
from studio.services import generate as generate_svc
from studio.services import models as models_svc
from studio.services import snapshots as snap_svc

TINY = ["--base-model", "tiny", "--generator", "local:tiny", "--train-prompts", "8", "--heldout-prompts", "6",
        "--max-steps", "2"]


@pytest.fixture
def tiny_home(studio_home, tiny_model_dir):
    models_svc.add_model(str(tiny_model_dir), name="tiny")
    return studio_home


def test_the_cli_runs_the_whole_chain_and_every_stage_links_to_the_one_before(tiny_home, capsys):
    assert cli.main(["demo", *TINY, "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index('{\n  "generation_run_id"'):])   # training prints its own lines first
    db = get_database()
    # seeds -> generation run -> pairs
    assert generate_svc.get_run(result["generation_run_id"]).summary.status in ("succeeded", "partial")
    pairs = generate_svc.list_pairs("preference", {"run_id": result["generation_run_id"]}, limit=100)
    assert len(pairs) == result["preference_pairs"] >= 2
    assert all(p["prompt"].endswith("Answer in at most 10 words.") for p in pairs)
    # pairs -> snapshot
    snapshot = snap_svc.get_snapshot(result["snapshot_id"])
    assert snapshot.summary.n_train == len(pairs)
    assert {r["run_id"] for r in snapshot.lineage["by_generation_run"]} == {result["generation_run_id"]}
    # snapshot -> DPO run -> registered adapter
    run = run_store.get_run(db, result["training_run_id"])
    assert (run.snapshot_id, run.status, run.recipe) == (result["snapshot_id"], "succeeded", "dpo")
    assert models_svc.get_model(result["trained_model"]).kind == "adapter"
    # DPO run -> comparison on held-out prompts -> rubric votes -> win rate with an interval
    comparison = compare_store.get_comparison(db, result["comparison_id"])
    assert comparison.training_run_id == result["training_run_id"]
    assert comparison.model_ids == [f"local:{result['trained_model']}", "local:tiny"]
    held_out = {p.prompt for p in compare_store.prompts_of(db, result["comparison_id"])}
    assert len(held_out) == 6 and not held_out & {p["prompt"] for p in pairs}
    assert result["wins"] + result["losses"] + result["ties"] == 6
    assert 0 <= result["ci_low"] <= result["win_rate"] <= result["ci_high"] <= 1
    assert [s["stage"] for s in result["stages"]] == ["generate", "snapshot", "train", "evaluate"]


def test_options_are_checked(tmp_path):
    with pytest.raises(BadInput, match="max_steps=0 is not a positive whole number"):
        demo.DemoOptions(max_steps=0)
    with pytest.raises(BadInput, match="train_prompts=True is not a positive whole number"):
        demo.DemoOptions(train_prompts=True)
    with pytest.raises(BadInput, match="base_model is empty"):
        demo.DemoOptions(base_model=" ")
    with pytest.raises(BadInput, match="holds no demo recipe"):
        demo.DemoOptions(recipe_dir=tmp_path)


def test_the_recipe_files_build_valid_configs():
    options = demo.DemoOptions.quick(generator="local:x")
    config = demo.generation_config(options)
    assert config.seeds.limit == 32 and config.responses.generators[0].target == "local:x"
    assert config.judge.rubric.params == {"max_words": demo.RULE_MAX_WORDS}
    spec = demo.train_spec(options, "snap_x", "abc")
    assert (spec.recipe, spec.snapshot_id, spec.hyper.max_steps, spec.name) == ("dpo", "snap_x", 8,
                                                                                 "demo-word-limit-dpo-abc")
    assert demo.generation_config(demo.DemoOptions()).seeds.limit == 64       # the recipe's own size
    cmp = demo.comparison_spec(options, "trained", "run_x")
    assert cmp.limit == 40 and cmp.models == ("local:trained", f"local:{options.base_model}")
    assert cmp.judge == {"kind": "rubric", "rubric": "length", "params": {"max_words": demo.RULE_MAX_WORDS}}


def test_a_demo_without_its_base_model_fails_with_the_pull_hint(studio_home):
    with pytest.raises(BadInput, match="is not registered") as err:
        demo.run_demo(demo.DemoOptions())
    assert "models pull" in err.value.hint


def test_the_background_job_reports_a_missing_base_model(studio_home):
    from studio.jobs import get_job

    job_id = demo.start_demo_job(quick=True)
    deadline = time.monotonic() + 120
    while get_job(job_id).active and time.monotonic() < deadline:
        time.sleep(0.5)
    job = get_job(job_id)
    assert (job.kind, job.status) == ("demo", "failed")
    assert "is not registered" in job.error
    assert demo.latest_demo().id == job_id


# -- the Home page's section ----------------------------------------------------------------------------
def _home_page():
    from streamlit.testing.v1 import AppTest

    from tests.fixtures.core import REPO_ROOT

    at = AppTest.from_file(str(REPO_ROOT / "pages" / "home.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_home_button_starts_the_demo_as_a_background_job(studio_home):
    from studio.jobs import list_jobs

    at = _home_page()
    at.checkbox(key="demo_quick").check().run()
    at.button(key="demo_start").click().run()
    assert not at.exception
    jobs = list_jobs(kind="demo")
    assert len(jobs) == 1 and jobs[0].name == "alignment demo (quick)"
    assert any(f"job {jobs[0].id}" in s.value for s in at.success)


def test_home_shows_the_last_demos_headline(studio_home):
    from storage import jobs as job_store

    db = get_database()
    job_store.insert_job(db, "job_demo1", "demo", "alignment demo", {"argv": ["demo"]})
    job_store.update_progress(db, "job_demo1", {"stage": "demo: done", "message": "trained vs base: win rate 80.0%",
                                                "result": {"win_rate": 0.8}})
    job_store.mark_finished(db, "job_demo1", "succeeded")
    at = _home_page()
    assert "Last demo: trained vs base: win rate 80.0%" in [s.value for s in at.success]
