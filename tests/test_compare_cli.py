"""``python -m studio compare CONFIG.yaml``, ``comparisons`` and ``leaderboard [--json]`` in-process."""

from __future__ import annotations

import json

import pytest

from studio.cli import main
from studio.services import compare as compare_svc
from studio.services import models as models_svc

pytestmark = pytest.mark.timeout(120)


def test_compare_config_then_judge_and_leaderboard(studio_home, fake_openai, tmp_path, capsys):
    fake_openai.configure(reply=lambda req: "blue" if req["model"] == "good-model" else "green")
    models_svc.add_endpoint("good", fake_openai.base_url, "good-model", max_retries=0, timeout_s=10)
    models_svc.add_endpoint("bad", fake_openai.base_url, "bad-model", max_retries=0, timeout_s=10)
    (tmp_path / "prompts.jsonl").write_text(
        "".join(json.dumps({"prompt": f"Colour of the sky, take {i}?", "answer": "blue"}) + "\n" for i in range(4)))
    config = tmp_path / "compare.yaml"
    config.write_text("name: sky\nmodels: [endpoint:good, endpoint:bad]\n"
                      "prompts: {source: upload, path: prompts.jsonl, reference_column: answer}\n"
                      "judge: {kind: rubric, rubric: reference_match}\n")
    assert main(["compare", str(config)]) == 0
    out = capsys.readouterr().out
    assert "with 4 prompts" in out and ": ready" in out and "judge    4 votes" in out

    assert main(["leaderboard", "--json", "--boot", "50"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["votes"] == 4 and board["ratings"][0]["model"] == "endpoint:good"
    assert board["matrix"]["endpoint:good"]["endpoint:bad"] == 1.0

    assert main(["leaderboard"]) == 0
    assert "endpoint:good" in capsys.readouterr().out

    (summary,) = compare_svc.list_comparisons()
    assert main(["comparisons", "show", summary.comparison_id]) == 0
    assert "votes    0 human, 4 judge" in capsys.readouterr().out
    assert main(["comparisons", "judge", summary.comparison_id, "--rubric", "reference_match"]) == 0
    assert "0 votes, 4 already judged" in capsys.readouterr().out


def test_bad_input_is_one_line_and_non_zero(studio_home, tmp_path, capsys):
    config = tmp_path / "one.yaml"
    config.write_text("models: [endpoint:only]\nprompts: {source: upload, path: p.jsonl}\n")
    assert main(["compare", str(config)]) == 2
    assert "A comparison needs at least two models; got 1" in capsys.readouterr().err
    assert main(["compare"]) == 2
    assert main(["comparisons", "show", "cmp_none"]) == 3
    assert "There is no comparison 'cmp_none'" in capsys.readouterr().err


def test_background_job_generates_and_reports_progress(studio_home, fake_openai, tmp_path):
    import time

    from pipelines.compare.spec import ComparisonSpec
    from studio import jobs

    models_svc.add_endpoint("one", fake_openai.base_url, "m1", max_retries=0, timeout_s=10)
    models_svc.add_endpoint("two", fake_openai.base_url, "m2", max_retries=0, timeout_s=10)
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Prompt {i}"}) + "\n" for i in range(3)))
    created = compare_svc.create_comparison(ComparisonSpec(models=("endpoint:one", "endpoint:two"),
                                                           prompt_source="upload", prompt_source_id=str(path)))
    assert created.job_id
    deadline = time.monotonic() + 90
    while jobs.get_job(created.job_id).active and time.monotonic() < deadline:
        time.sleep(0.5)
    job = jobs.get_job(created.job_id)
    assert job.status == "succeeded", (job.error, jobs.job_log_path(job.id).read_text()[-2000:])
    assert job.progress["stage"] == "outputs" and job.progress["done"] == job.progress["total"] == 6
    summary = compare_svc.get_comparison(created.comparison_id)
    assert summary.status == "ready" and summary.counts["outputs"] == 6 and summary.job_id == created.job_id
