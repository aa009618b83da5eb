"""The generation service and CLI: config validation (every rule), YAML round trips, background runs
that survive a kill (reconciled, then resumed), stop, listings, lineage lookups and CLI output."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from core.specs import describe_fields
from pipelines.generate.config import GenerationConfig
from studio.services.generate import run_generation
from studio import jobs
from studio.cli_generate import main as cli
from core.errors import BadInput, NotFound
from studio.services import generate as service
from tests.fixtures.core import REPO_ROOT
from tests.generate_script import BASE_CONFIG, fake_endpoint, make_config, merged, scripted_reply

__all__ = ["fake_endpoint"]


@pytest.mark.parametrize("changes, message", [
    ({"nmae": "x"}, r"nmae: unknown key in the generation config\. Did you mean 'name'\?"),
    ({"instructions": {"per_seeed": 2}}, r"instructions.per_seeed: unknown key.*Did you mean 'per_seed'"),
    ({"judge": {"rubric": {"nam": "length"}}}, r"judge.rubric.nam: unknown key.*Did you mean 'name'"),
    ({"preprocess": {"near_treshold": 0.5}}, r"preprocess.near_treshold: unknown key.*near_threshold"),
    ({"name": ""}, r"name='' is not valid.*non-empty name"),
    ({"batch_size": 0}, r"batch_size=0 is out of range.*1 to 1024"),
    ({"concurrency": 0}, r"concurrency=0 is out of range.*1 to 256"),
    ({"seeds": {"file": "seeds.csv"}}, r"seeds gives texts, file.*exactly one of"),
    ({"seeds": {"texts": []}}, r"seeds gives no source"),
    ({"seeds": {"texts": ["ok", " "]}}, r"seeds.texts=.*non-empty seed tasks"),
    ({"seeds": {"texts": "just one string"}}, r"seeds.texts='just one string' must be a list"),
    ({"seeds": {"limit": 0}}, r"seeds.limit=0 is out of range"),
    ({"instructions": {"method": "magic"}}, r"instructions.method='magic' is not one of the choices.*seeds, self_instruct, evol"),
    ({"instructions": {"per_seed": 0}}, r"instructions.per_seed=0 is out of range.*1 to 50"),
    ({"instructions": {"method": "evol", "per_seed": 3, "evol_operations": ["deepen", "breadth"]}},
     r"instructions.per_seed=3 is not valid.*at most 2"),
    ({"instructions": {"evol_operations": ["deepen", "shrink"]}}, r"instructions.evol_operations\[1\]='shrink' is not one of the choices.*deepen"),
    ({"instructions": {"evol_rounds": 9}}, r"instructions.evol_rounds=9 is out of range.*1 to 5"),
    ({"instructions": {"generator": "gpt-4"}}, r"instructions.generator='gpt-4' is not valid.*endpoint:<name>"),
    ({"instructions": {"templates": {"self_instruct": "Write {n} tasks."}}}, r"lacks the placeholder\(s\) \{seed\}"),
    ({"instructions": {"templates": {"self_instruct": "{seed} {count}"}}}, r"unknown placeholder\(s\) \{count\}"),
    ({"instructions": {"templates": {"self_instruct": "{seed} {"}}}, r"stray brace"),
    ({"instructions": {"templates": {"evol:shrink": "{instruction}"}}}, r"no template kind 'evol:shrink'"),
    ({"instructions": {"sampling": {"temperature": 3}}}, r"instructions.sampling.temperature=3 is out of range.*0 to 2"),
    ({"instructions": {"sampling": {"temperature": "hot"}}}, r"instructions.sampling.temperature='hot' must be a number"),
    ({"instructions": {"sampling": {"top_p": 0}}}, r"instructions.sampling.top_p=0 is out of range.*above 0"),
    ({"instructions": {"sampling": {"max_tokens": 0}}}, r"instructions.sampling.max_tokens=0 is out of range"),
    ({"instructions": {"sampling": {"seed": -1}}}, r"instructions.sampling.seed=-1 is out of range"),
    ({"instructions": [1, 2]}, r"instructions must be a mapping"),
    ({"responses": {"generators": []}}, r"responses.generators=\[\] is not valid.*at least one generator"),
    ({"responses": {"generators": [{"target": "endpoint:a"}, {"target": "endpoint:a"}]}}, r"each target once"),
    ({"responses": {"generators": [{"target": "endpoint:a", "candidates": 0}]}},
     r"responses.generators\[0\].candidates=0 is out of range.*1 to 16"),
    ({"judge": {"kind": "human"}}, r"judge.kind='human' is not one of the choices.*llm, rubric"),
    ({"judge": {"mode": "rankwise"}}, r"judge.mode='rankwise' is not one of the choices.*listwise"),
    ({"judge": {"kind": "rubric", "mode": "pairwise"}}, r"judge.mode='pairwise' is not valid.*pointwise"),
    ({"judge": {"target": "nowhere"}}, r"judge.target='nowhere' is not valid"),
    ({"judge": {"aspects": []}}, r"judge.aspects=\[\] is not valid"),
    ({"judge": {"temperature": 5}}, r"judge.temperature=5 is out of range.*0 to 2"),
    ({"judge": {"max_tokens": 5}}, r"judge.max_tokens=5 is out of range.*16 to 8192"),
    ({"judge": {"min_sft_score": 7}}, r"judge.min_sft_score=7 is out of range.*1 to 5"),
    ({"judge": {"repair": "yes"}}, r"judge.repair='yes' must be true or false"),
    ({"judge": {"kind": "rubric", "rubric": {"name": "no_such_rubric"}}}, r"no rubric named 'no_such_rubric'"),
    ({"preprocess": {"near_threshold": 2}}, r"preprocess.near_threshold=2 is out of range"),
])
def test_every_config_rule_names_the_field_the_value_and_the_fix(changes, message):
    with pytest.raises(BadInput, match=message):
        GenerationConfig.from_dict(merged(BASE_CONFIG, changes))


def test_yaml_errors_are_one_clear_message(tmp_path):
    with pytest.raises(BadInput, match=r"not valid YAML at line 3, column 1"):
        GenerationConfig.from_yaml("name: x\nseeds: {texts: [a]\nname2: y\n")
    with pytest.raises(BadInput, match="The generation config is empty"):
        GenerationConfig.from_yaml("# nothing\n")
    with pytest.raises(BadInput, match="The generation config must be a mapping"):
        GenerationConfig.from_yaml("- a list\n")
    with pytest.raises(BadInput, match="does not exist"):
        GenerationConfig.from_yaml(tmp_path / "missing.yaml")


def test_yaml_round_trip_defaults_and_the_example():
    config = service.default_config()
    assert service.config_from_yaml(service.config_to_yaml(config)) == config
    assert config.seeds.texts and config.targets() == ["endpoint:embedded"]
    example = GenerationConfig.from_yaml(REPO_ROOT / "examples" / "generate.yaml")
    assert example.targets() == ["endpoint:embedded"]
    assert GenerationConfig.from_yaml(example.to_yaml()) == example
    helps = describe_fields(GenerationConfig)
    assert len(helps) > 40 and all(row.help for row in helps)
    assert ("responses.generators", [{"target": "endpoint:embedded", "candidates": 2, "sampling": {
        "temperature": 0.7, "top_p": 1.0, "max_tokens": 256, "seed": None}}]) in [(r.path, r.default) for r in helps]


def _wait_run(run_id: str, until, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = service.get_run(run_id)
        if until(detail):
            return detail
        if detail.summary.status not in ("queued", "running"):
            break  # it ended without getting there
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never got there: {service.get_run(run_id).summary}")


def test_a_background_run_is_killed_reconciled_and_resumed(db, fake_endpoint):
    fake_endpoint.configure(reply=scripted_reply, latency_s=0.3)
    config = make_config()
    started = service.start_generation(config)
    # the config is stored once, in the run's row; the job runs that stored config
    assert service.stored_config(started.run_id).to_dict() == config.to_dict()
    assert jobs.get_job(started.job_id).spec["argv"] == ["generate", "--run-id", started.run_id]
    detail = _wait_run(started.run_id, lambda d: d.summary.counts.get("responses", 0) >= 1)
    assert detail.summary.status == "running" and detail.progress.get("run_id") == started.run_id
    os.killpg(jobs.get_job(started.job_id).pid, signal.SIGKILL)
    detail = _wait_run(started.run_id, lambda d: d.summary.status != "running", timeout=20)
    assert detail.summary.status == "interrupted" and detail.resumable
    assert "generations resume" in detail.summary.message

    fake_endpoint.configure(reply=scripted_reply)
    resumed = service.resume_generation(started.run_id)
    assert resumed.run_id == started.run_id and resumed.job_id != started.job_id
    detail = _wait_run(started.run_id, lambda d: d.summary.status not in ("queued", "running"))
    assert detail.summary.status == "succeeded", detail.summary.message
    assert detail.summary.counts["preference_pairs"] == 6 and jobs.get_job(resumed.job_id).status == "succeeded"
    assert {r["stage"] for r in detail.ledger["by_stage"]} == {"instructions", "responses", "judge"}
    assert [s["step"] for s in detail.report["responses"]][:1] == ["normalize"]
    assert "seeds:" in detail.config_yaml and detail.config == make_config()


def test_stop_a_background_run_then_resume(db, fake_endpoint):
    fake_endpoint.configure(reply=scripted_reply, latency_s=0.3)
    started = service.start_generation(make_config())
    with pytest.raises(BadInput, match=f"The run {started.run_id} is still (queued|running)"):
        service.resume_generation(started.run_id)
    _wait_run(started.run_id, lambda d: d.summary.counts.get("instructions", 0) >= 1)
    service.stop_generation(started.run_id)
    detail = _wait_run(started.run_id, lambda d: d.summary.status not in ("queued", "running"), timeout=30)
    assert detail.summary.status == "stopped" and detail.resumable
    assert detail.summary.counts["preference_pairs"] == 0
    fake_endpoint.configure(reply=scripted_reply)
    service.resume_generation(started.run_id)
    detail = _wait_run(started.run_id, lambda d: d.summary.status not in ("queued", "running"))
    assert detail.summary.status == "succeeded" and detail.summary.counts["sft_pairs"] == 6


def test_listings_lineage_and_their_bad_input(db, fake_endpoint):
    summary = run_generation(make_config())
    (listed,) = [r for r in service.list_runs() if r.run_id == summary.run_id]
    assert listed.status == "succeeded" and listed.tokens > 0 and listed.counts["preference_pairs"] == 6
    assert service.count_pairs("sft", {"run_id": summary.run_id, "model": "fake-model"}) == 6
    assert service.list_pairs("preference", {"min_confidence": 0.9}) == []
    assert len(service.list_pairs("preference", {"max_length": 10_000}, limit=2, offset=1)) == 2
    with pytest.raises(BadInput, match="colour: unknown key in the pair filters"):
        service.list_pairs("preference", {"colour": "red"})
    with pytest.raises(BadInput, match="min_confidence=2 is out of range"):
        service.list_pairs("preference", {"min_confidence": 2})
    with pytest.raises(BadInput, match="not a valid page"):
        service.list_pairs("preference", limit=0)
    with pytest.raises(BadInput, match="Unknown pair kind"):
        service.list_pairs("kto")
    with pytest.raises(NotFound, match="There is no preference pair 'pp_nope'"):
        service.get_lineage("preference", "pp_nope")
    with pytest.raises(NotFound, match="There is no generation run 'gen_nope'"):
        service.get_run("gen_nope")
    with pytest.raises(NotFound, match="There is no generation run 'gen_nope'"):
        service.resume_generation("gen_nope")


def test_unknown_targets_are_refused_before_anything_starts(db, fake_endpoint):
    with pytest.raises(NotFound, match="There is no endpoint named 'missing'"):
        service.start_generation(make_config(judge={"target": "endpoint:missing"}))
    with pytest.raises(NotFound, match="There is no model named 'nope'"):
        run_generation(make_config(responses={"generators": [{"target": "local:nope"}]}))
    assert service.list_runs() == []


def test_cli_generate_and_generations(db, fake_endpoint, tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(make_config().to_yaml())
    assert cli(["generate", str(path), "--run-id", "gen_cli"]) == 0
    out = capsys.readouterr().out
    assert "run gen_cli (test run): succeeded" in out and "6 preference, 6 SFT" in out
    assert cli(["generations", "list"]) == 0
    assert "gen_cli" in capsys.readouterr().out
    assert cli(["generations", "show", "gen_cli"]) == 0
    shown = capsys.readouterr().out
    assert "cost ledger by stage and model" in shown and "preprocessing of instructions" in shown
    requests = fake_endpoint.stats.requests
    assert cli(["generations", "resume", "gen_cli"]) == 0            # nothing left to do: no new call
    assert fake_endpoint.stats.requests == requests and "succeeded" in capsys.readouterr().out
    for argv, code, message in (
        (["generate", str(tmp_path / "nope.yaml")], 2, "does not exist"),
        (["generations", "show", "gen_nope"], 3, "There is no generation run 'gen_nope'"),
        (["generations", "frobnicate"], 2, "invalid choice"),
    ):
        assert cli(argv) == code
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_a_seed_file_with_a_mapping(db, fake_endpoint, tmp_path):
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("question,answer\nWhat is 2+2?,4\nName a colour.,red\n", encoding="utf-8")
    config = make_config(seeds={"texts": [], "file": str(seeds), "mapping": {"text": "question", "reference": "answer"}},
                         instructions={"method": "seeds"})
    summary = run_generation(config)
    assert summary.status == "succeeded" and summary.counts["instructions_kept"] == 2
    pair = service.list_pairs("preference", {"run_id": summary.run_id})[0]
    assert service.get_lineage("preference", pair["id"])["seed"]["reference"] in ("4", "red")
    assert Path(seeds).exists()


def test_more_bad_input_is_refused_with_the_fix(db, fake_endpoint, tmp_path):
    with pytest.raises(BadInput, match="max_length=0 is out of range"):
        service.list_pairs("sft", {"max_length": 0})
    with pytest.raises(BadInput, match="Unknown order 'random'"):
        service.list_pairs("sft", order="random")
    with pytest.raises(NotFound, match="There is no seed set 'no such set'"):
        run_generation(make_config(seeds={"texts": [], "seed_set": "no such set"}))
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(BadInput, match="is not UTF-8 text"):
        GenerationConfig.from_yaml(latin)
    with pytest.raises(BadInput, match="A config must be YAML text or a path, not int"):
        GenerationConfig.from_yaml(42)


def test_the_embedded_model_as_judge_gets_a_warning():
    assert "almost never writes a verdict" in service.judge_warning("endpoint:embedded")
    assert service.judge_warning("endpoint:openai") is None and service.judge_warning(None) is None


def test_a_double_click_on_start_makes_one_run(db, fake_endpoint):
    """Two starts of the same config at once (a double click, two tabs) give one run and one job."""
    from concurrent.futures import ThreadPoolExecutor

    config = make_config(name="double")
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: service.start_generation(config), range(2))
    assert first == second
    assert [r.run_id for r in service.list_runs() if r.name == "double"] == [first.run_id]
    detail = _wait_run(first.run_id, lambda d: d.summary.status not in ("queued", "running"), timeout=60)
    assert detail.summary.status == "succeeded", detail.summary.message
