"""Model targets: one registry of target kinds (``endpoint:``, ``local:``, and any kind a module adds
with ``register_kind``), resolved in pipelines/llm/targets.py and handed down to generation."""

from __future__ import annotations

import pytest

from core.errors import NotFound
from pipelines.llm import targets
from pipelines.llm.base import SamplingParams
from pipelines.llm.openai_compat import OpenAICompatibleBackend


def test_a_new_kind_of_backend_is_one_registered_opener(db, fake_openai):
    """What a newcomer writes to add a backend: the opener, registered under its kind; every stage
    that takes a target (generation, comparison, the playground) can then use `<kind>:<name>`."""
    fake_openai.configure(reply=lambda request: f"served {request['model']}")
    opened = []

    @targets.register_kind("loopback")
    def open_loopback(name, db, *, job_id, stage, concurrency):
        opened.append((name, job_id, stage))
        return OpenAICompatibleBackend(fake_openai.base_url, name, None, max_retries=0)

    try:
        backend = targets.open_backend("loopback:tiny-served", db, job_id="gen_1", stage="responses")
        answer = backend.generate([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=8))
        backend.close()
        assert answer.text == "served tiny-served" and opened == [("tiny-served", "gen_1", "responses")]
        targets.check_targets(["loopback:anything"], db)      # no registry rows to check for this kind
    finally:
        targets.OPENERS.pop("loopback")
    with pytest.raises(NotFound, match="is not a target.*endpoint:<name> or local:<name>"):
        targets.split_target("loopback:tiny-served")


@pytest.mark.parametrize("key", ["nope", "local:", ":x", "vllm:x", ["local:x"], None])
def test_what_is_not_a_target_is_refused_with_the_forms(key):
    with pytest.raises(NotFound, match="is not a target"):
        targets.split_target(key)


def test_a_missing_model_or_endpoint_names_what_exists(db):
    with pytest.raises(NotFound, match="There is no model named 'ghost'.*Registered models: none yet"):
        targets.check_targets(["local:ghost"], db)
    with pytest.raises(NotFound, match="There is no endpoint named 'ghost'"):
        targets.check_targets(["endpoint:ghost"], db)
