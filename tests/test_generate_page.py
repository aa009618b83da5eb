"""AppTests for the Generate page: seeds, the config editor and its YAML, a real run, results, lineage.

State is set up through the services (never SQL); actions go through real widgets. The run test
starts a real background job (``python -m studio generate ...``) against the fake OpenAI server on
loopback, whose scripted replies (tests/generate_script.py) make instructions, candidates of two
lengths and judge JSON, so pairs come out and the judge's raw output can be checked on the page.
"""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from core import settings
from studio.services import generate as gen_svc
from studio.services import models as models_svc
from studio.services import seeds as seeds_svc
from tests.apptest_helpers import page_with_tab, rerun, texts, widget
from tests.fixtures.core import REPO_ROOT
from tests.generate_script import scripted_reply

GENERATE = REPO_ROOT / "pages" / "generate.py"
TIMEOUT_S = 60
RUN_TIMEOUT_S = 90


def run_page(tab: str = "Seeds") -> AppTest:
    return page_with_tab(GENERATE, tab, TIMEOUT_S)


def open_tab(at: AppTest, tab: str) -> AppTest:
    at.query_params["tab"] = tab
    return rerun(at)


@pytest.fixture
def fake_endpoint(studio_home, fake_openai):
    fake_openai.configure(reply=scripted_reply)
    return models_svc.add_endpoint("fake", fake_openai.base_url, "fake-model", max_retries=0, timeout_s=10)


# -- empty home ------------------------------------------------------------------------------------------
def test_renders_in_an_empty_home_and_says_what_to_do(studio_home):
    at = AppTest.from_file(str(GENERATE), default_timeout=TIMEOUT_S).run()  # no ?tab=: Seeds opens
    assert not at.exception, [e.value for e in at.exception]
    assert [t.label for t in at.tabs] == ["Seeds", "Configure & run", "Results"]
    assert "No seeds yet" in texts(at) and "type them, upload a CSV, JSONL or Parquet file" in texts(at)
    assert "Add seeds" in [b.label for b in at.button]
    at = open_tab(at, "Configure & run")
    assert "No model or endpoint to generate with" in texts(at) and "**Models**" in texts(at)
    assert "No seeds yet" not in texts(at)  # only the open tab renders
    at = open_tab(at, "Results")
    assert "No runs yet: add seeds, then start a run." in texts(at)
    assert not at.dataframe


# -- seeds ------------------------------------------------------------------------------------------------
def test_typed_seeds_import_shows_a_summary_and_lists_the_set(studio_home):
    at = run_page()
    widget(at.text_area, "Seed tasks").input("Explain a hash map.\nWrite a haiku about rain.\nWhat is 2 + 2?")
    widget(at.text_input, "Seed set name (optional)").input("my seeds")
    widget(at.button, "Add seeds").click()
    at = rerun(at)
    assert any("Imported **3** seeds into **my seeds**" in s.value for s in at.success), texts(at)
    (table,) = [d.value for d in at.dataframe if "seeds" in d.value.columns]
    assert (table.iloc[0]["name"], table.iloc[0]["seeds"], table.iloc[0]["source"]) == ("my seeds", 3, "typed")
    assert [(s.name, s.seeds) for s in seeds_svc.list_seed_sets()] == [("my seeds", 3)]
    assert widget(at.text_area, "Seed tasks").value == ""       # stored, so the box is ready for the next ones


def test_empty_typed_seeds_show_what_to_do(studio_home):
    at = run_page()
    widget(at.text_area, "Seed tasks").input("   \n  ")
    widget(at.button, "Add seeds").click()
    at = rerun(at)
    assert any("No seeds were given" in e.value for e in at.error), [e.value for e in at.error]
    assert seeds_svc.list_seed_sets() == []
    assert widget(at.text_area, "Seed tasks").value == "   \n  "   # refused input stays to be fixed


def test_uploaded_csv_is_previewed_mapped_and_imported_with_skipped_rows(studio_home):
    at = run_page()
    widget(at.radio, "How").set_value("From a file")
    at = rerun(at)
    data = ("question;answer;topic\nWhat is DNS?;A name system;net\n;no question here;none\n"
            "Why is the sky blue?;Scattering;sci\n")
    widget(at.file_uploader, "Upload a seed file").set_value(("quiz.csv", data.encode("utf-16"), "text/csv"))
    at = rerun(at)
    assert "**quiz.csv** · csv · UTF-16 LE (with BOM)" in texts(at)
    assert "Columns are separated by semicolon." in texts(at)
    assert widget(at.selectbox, "Text column (the seed task)").value == "question"  # guessed from the name
    widget(at.selectbox, "Reference answer column").set_value("answer")
    widget(at.multiselect, "Metadata columns").set_value(["topic"])
    widget(at.button, "Import").click()
    at = rerun(at)
    summary = " ".join(s.value for s in at.success)
    assert "Imported **2** seeds into **quiz**" in summary and "skipped 1" in summary and "UTF-16" in summary
    (problems,) = [d.value for d in at.dataframe if "reason" in d.value.columns]
    assert problems.iloc[0]["line"] == 3 and "empty" in problems.iloc[0]["reason"]
    (seed_set,) = seeds_svc.list_seed_sets()
    first = seeds_svc.list_seeds(seed_set.id)[0]
    assert (first.text, first.reference, first.metadata.get("topic")) == ("What is DNS?", "A name system", "net")


def test_a_missing_server_side_path_shows_the_error(studio_home, tmp_path):
    at = run_page()
    widget(at.radio, "How").set_value("From a file")
    at = rerun(at)
    widget(at.text_input, "…or a file or `datasets` folder on this machine").input(str(tmp_path / "nope.jsonl"))
    widget(at.button, "Preview").click()
    at = rerun(at)
    assert at.error and "nope.jsonl" in at.error[0].value


# -- configure: the YAML editor ---------------------------------------------------------------------------
@pytest.fixture
def configurable(studio_home):
    models_svc.add_endpoint("fake", "http://127.0.0.1:9/v1", "fake-model")
    return seeds_svc.add_typed_seeds(["Explain a hash map."], name="one seed")


def test_bad_yaml_shows_the_error_naming_the_field(configurable):
    at = run_page("Configure & run")
    editor = widget(at.text_area, "Config (YAML)")
    assert "seed_set: " + configurable.seed_set_id in editor.value  # the newest seed set is picked
    editor.input(editor.value.replace("temperature: 0.7", "temperature: 5"))
    widget(at.button, "Apply YAML").click()
    at = rerun(at)
    errors = [e.value for e in at.error]
    assert any("responses.generators[0].sampling.temperature=5 is out of range" in e and "0 to 2" in e
               for e in errors), errors
    editor = widget(at.text_area, "Config (YAML)")
    editor.input("name: [unclosed\n")
    widget(at.button, "Apply YAML").click()
    at = rerun(at)
    assert any("not valid YAML at line" in e.value for e in at.error), [e.value for e in at.error]


def test_applied_yaml_updates_the_widgets(configurable):
    at = run_page("Configure & run")
    editor = widget(at.text_area, "Config (YAML)")
    text = editor.value.replace("name: generation", "name: from yaml").replace("method: self_instruct", "method: evol")
    editor.input(text.replace("per_seed: 2", "per_seed: 3"))
    widget(at.button, "Apply YAML").click()
    at = rerun(at)
    assert "Applied the YAML config." in texts(at)
    assert widget(at.text_input, "Run name").value == "from yaml"
    assert widget(at.radio, "Instructions").value == "evol"
    assert widget(at.number_input, "Instructions per seed").value == 3
    assert "Instruction prompt: evol:deepen" in [t.label for t in at.text_area]


def test_an_invalid_combination_in_the_form_disables_start(configurable):
    at = run_page("Configure & run")
    widget(at.radio, "Instructions").set_value("evol")
    at = rerun(at)
    widget(at.multiselect, "Evol-Instruct operations").set_value(["deepen"])
    at = rerun(at)
    assert any("per_seed=2 is not valid" in e.value for e in at.error), [e.value for e in at.error]
    assert widget(at.button, "Start generation").disabled


# -- a real run -------------------------------------------------------------------------------------------------
def wait_for_runs(timeout_s: float = RUN_TIMEOUT_S) -> list:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = gen_svc.list_runs()
        if runs and all(r.status not in ("queued", "running") for r in runs):
            return runs
        time.sleep(0.3)
    raise AssertionError(f"the run did not finish in {timeout_s} s: {gen_svc.list_runs()}")


def test_start_a_run_then_browse_pairs_and_a_lineage_with_raw_judge_output(fake_endpoint, fake_openai):
    seeds_svc.add_typed_seeds(["Explain what a hash map is.", "Write a limerick about a cat."], name="two")
    at = run_page("Configure & run")
    widget(at.text_input, "Run name").input("page run")
    widget(at.button, "Start generation").click()
    at = rerun(at)
    assert any("in the background" in s.value for s in at.success), texts(at)
    (bar,) = at.get("progress")  # the job is live: its progress line shows (queued, then per stage)
    assert bar.proto.text.startswith("generate page run")
    assert widget(at.button, "Stop").disabled is False and widget(at.button, "Resume").disabled
    (run,) = wait_for_runs()
    assert run.status == "succeeded", (run.status, run.message, run.errors)
    assert fake_openai.stats.served > 0

    at = rerun(at)
    assert "generate page run finished." in texts(at) and not at.get("progress")
    runs_table = next(d.value for d in at.dataframe if "preference pairs" in d.value.columns)
    assert runs_table.iloc[0]["run"] == "page run" and runs_table.iloc[0]["status"] == "succeeded"
    assert runs_table.iloc[0]["preference pairs"] == run.counts["preference_pairs"] > 0
    assert widget(at.button, "Stop").disabled and widget(at.button, "Resume").disabled

    at = open_tab(at, "Results")
    pairs = next(d.value for d in at.dataframe if "chosen" in d.value.columns)
    assert len(pairs) == run.counts["preference_pairs"]
    assert (pairs["chosen model"] == "fake-model").all()
    assert pairs["chosen"].str.contains("variant 1").all() and pairs["rejected"].str.contains("variant 0").all()

    raw = [c.value for c in at.code]
    assert any('"helpfulness": 4' in r for r in raw) and any('"helpfulness": 2' in r for r in raw), raw
    page = texts(at)
    assert "**chosen**" in page and "**rejected**" in page and "Rationale: scored 4" in page
    assert "**Confidence 0.50** · score gap 2.0 · chosen `fake-model`" in page
    picker = widget(at.selectbox, "Open a pair (or click a row above)")
    assert picker.value == pairs.iloc[0]["id"] and len(picker.options) == len(pairs)
    other = pairs.iloc[-1]
    picker.set_value(other["id"])
    at = rerun(at)
    shown = [t.value for t in at.text]
    assert other["prompt"] in shown  # the instruction of the newly opened pair

    widget(at.radio, "Show").set_value("sft")
    at = rerun(at)
    sft = next(d.value for d in at.dataframe if "completion" in d.value.columns)
    assert len(sft) == run.counts["sft_pairs"] > 0
    assert "**SFT completion**" in texts(at)


def test_results_filters_ledger_and_export(fake_endpoint, tmp_path):
    seeds_svc.add_typed_seeds(["Explain recursion."], name="one")
    at = run_page("Configure & run")
    widget(at.button, "Start generation").click()
    at = rerun(at)
    (run,) = wait_for_runs()
    at = open_tab(at, "Results")
    at.selectbox(key="res_run").set_value(run.run_id)
    at = rerun(at)
    assert {m.label for m in at.metric} >= {"Calls", "Tokens", "Cost", "Cost per preference pair"}
    ledger = next(d.value for d in at.dataframe if "stage" in d.value.columns and "calls" in d.value.columns)
    assert set(ledger["stage"]) >= {"instructions", "responses"}
    steps = next(d.value for d in at.dataframe if "removed" in d.value.columns)
    assert {"instructions", "responses"} <= set(steps["on"])

    # scripted scores are 4 (long answer) and 2 (short): a gap of 2 on the 1-5 scale, confidence 0.5
    pairs = next(d.value for d in at.dataframe if "chosen" in d.value.columns)
    assert len(pairs) == run.counts["preference_pairs"] > 0 and set(pairs["confidence"]) == {0.5}
    at.slider(key="res_conf").set_value((0.55, 1.0))
    at = rerun(at)
    assert any("No preference pairs match yet" in i.value for i in at.info), texts(at)
    at.slider(key="res_conf").set_value((0.45, 0.55))
    at = rerun(at)
    assert len(next(d.value for d in at.dataframe if "chosen" in d.value.columns)) == run.counts["preference_pairs"]

    # a path typed in the browser must stay inside STUDIO_HOME: outside is refused, nothing written
    at.text_input(key="export_path").input(str(tmp_path / "out" / "prefs"))
    widget(at.button, "Export preference pairs").click()
    at = rerun(at)
    assert any("points outside" in e.value for e in at.error), texts(at)
    assert not (tmp_path / "out").exists()
    at.text_input(key="export_path").input("out/prefs")          # relative: under STUDIO_HOME/exports
    widget(at.button, "Export preference pairs").click()
    at = rerun(at)
    target = settings.current().home / "exports" / "out" / "prefs.jsonl"
    assert any(f"to `{target}`" in s.value for s in at.success), texts(at)
    assert len(target.read_text().splitlines()) == run.counts["preference_pairs"]
    # the export downloads from the browser as the very file; a datasets folder as one zip
    (download,) = at.get("download_button")
    assert "prefs.jsonl" in download.proto.label
    assert gen_svc.export_download(target).data == target.read_bytes()
    choice_box = at.selectbox(key="export_fmt")
    choice_box.set_value("datasets")
    at.text_input(key="export_path").input("out/prefs-folder")
    widget(at.button, "Export preference pairs").click()
    at = rerun(at)
    import io
    import zipfile

    zipped = gen_svc.export_download(settings.current().home / "exports" / "out" / "prefs-folder")
    assert zipped.file_name == "prefs-folder.zip"
    assert "prefs-folder/dataset_dict.json" in zipfile.ZipFile(io.BytesIO(zipped.data)).namelist()


def test_stop_then_resume_a_run_from_the_page(fake_endpoint, fake_openai):
    fake_openai.configure(reply=scripted_reply, latency_s=1.5)  # slow enough to stop it mid-run
    seeds_svc.add_typed_seeds(["Explain what a hash map is."], name="slow")
    at = run_page("Configure & run")
    widget(at.button, "Start generation").click()
    at = rerun(at)
    widget(at.button, "Stop").click()
    at = rerun(at)
    assert any("to stop after its current batch" in s.value for s in at.success), texts(at)
    (run,) = wait_for_runs()
    assert run.status == "stopped", (run.status, run.message)
    assert run.counts.get("preference_pairs", 0) == 0

    fake_openai.configure(reply=scripted_reply)
    at = rerun(at)
    assert "**stopped** · " in texts(at) and "studio generations resume" in texts(at)  # the note says how to go on
    assert widget(at.button, "Stop").disabled and not widget(at.button, "Resume").disabled
    widget(at.button, "Resume").click()
    at = rerun(at)
    assert f"Resumed run {run.run_id}." in texts(at)
    (resumed,) = wait_for_runs()
    assert (resumed.run_id, resumed.status) == (run.run_id, "succeeded"), resumed.message
    assert resumed.counts["preference_pairs"] > 0


def test_a_rubric_judge_checks_its_parameters_then_labels_a_run(fake_endpoint):
    seeds_svc.add_typed_seeds(["Explain what a hash map is."], name="rubric seeds")
    at = run_page("Configure & run")
    widget(at.radio, "Judge").set_value("rubric")
    at = rerun(at)
    # the default rubric works with its default parameters: no dead end
    assert widget(at.selectbox, "Rubric").value == "answer_quality"
    assert not at.error and not widget(at.button, "Start generation").disabled, [e.value for e in at.error]
    widget(at.selectbox, "Rubric").set_value("length")
    at = rerun(at)
    # the length rubric's form starts from a valid example (a bound), with each parameter documented
    assert widget(at.number_input, "max words").value == 100 and "Most words" in widget(at.number_input, "max words").help
    assert not at.error and not widget(at.button, "Start generation").disabled
    widget(at.number_input, "min words").set_value(500)      # a contradiction is said, and Start waits
    at = rerun(at)
    assert any("min_words" in e.value for e in at.error), [e.value for e in at.error]
    assert widget(at.button, "Start generation").disabled
    # "Answer variant 1 ..." answers have 20+ words, "variant 0" ones fewer: the long one passes
    widget(at.number_input, "min words").set_value(20)
    at = rerun(at)
    assert not at.error, [e.value for e in at.error]
    widget(at.button, "Start generation").click()
    at = rerun(at)
    (run,) = wait_for_runs()
    assert run.status == "succeeded", (run.status, run.message, run.errors)
    at = open_tab(at, "Results")
    pairs = next(d.value for d in at.dataframe if "chosen" in d.value.columns)
    assert len(pairs) == run.counts["preference_pairs"] > 0 and set(pairs["judge"]) == {"rubric:length"}
    raw = [c.value for c in at.code]
    assert any('"passed": true' in r for r in raw) and any('"passed": false' in r for r in raw), raw


def test_the_embedded_model_as_llm_judge_is_warned_about(studio_home):
    from studio.services.models import ensure_embedded_endpoint

    ensure_embedded_endpoint()
    at = run_page("Configure & run")
    assert not at.exception
    # with only the embedded model, the default judge is a rubric that labels any prose
    assert widget(at.radio, "Judge").value == "rubric" and widget(at.selectbox, "Rubric").value == "answer_quality"
    assert "almost never writes a verdict" not in texts(at)
    widget(at.radio, "Judge").set_value("llm")   # choosing the embedded model as LLM judge is warned about
    at = rerun(at)
    assert "almost never writes a verdict" in texts(at)
