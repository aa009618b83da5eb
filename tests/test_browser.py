"""Through a real browser: the Models page streams an answer from the real embedded llama.cpp server.

The app runs as `streamlit run studio/app.py` with its own STUDIO_HOME whose embedded endpoint
points at a real llama.cpp server serving SmolLM2-135M-Instruct; headless Chromium clicks through
the page like a user. A screenshot lands in the test's tmp dir for a human to look at.
"""

from __future__ import annotations

import re

import pytest

from studio.services import models as models_service
from tests.fixtures.core import free_port

pytestmark = pytest.mark.timeout(300)


def test_try_a_prompt_streams_an_answer_from_the_embedded_llama_server(
    llama_server, streamlit_app, browser_page, monkeypatch, tmp_path
):
    monkeypatch.setenv("STUDIO_LLM_PORT", str(llama_server.port))
    embedded = models_service.ensure_embedded_endpoint()
    assert embedded.base_url == llama_server.url
    models_service.add_endpoint("elsewhere", f"http://127.0.0.1:{free_port()}/v1", "other", max_retries=0)
    app = streamlit_app()
    page = browser_page

    page.goto(f"{app.url}/models")
    page.get_by_role("heading", name="Try a prompt").wait_for()
    target = page.get_by_role("combobox", name="Model or endpoint")
    target.click()
    options = page.get_by_role("option")
    options.filter(has_text="elsewhere").wait_for()
    options.filter(has_text="embedded").click()
    assert target.input_value().startswith("embedded · smollm2-135m-instruct")

    page.get_by_label("Prompt", exact=True).fill("What is the capital of France? Answer in one sentence.")
    page.get_by_role("button", name="Run").click()

    output = page.locator(".st-key-try_output")
    output.wait_for()
    page.wait_for_function(
        "el => el.innerText.trim().length > 10",
        arg=output.element_handle(), timeout=120_000,
    )
    page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')", timeout=120_000)
    answer = output.inner_text().strip()
    page.screenshot(path=str(tmp_path / "models-try-a-prompt.png"), full_page=True)
    assert re.search(r"[A-Za-z]{3,}", answer), answer
    assert not page.get_by_test_id("stException").count(), app.log()[-2000:]
    assert not output.get_by_test_id("stAlertContentError").count(), answer
