"""The OpenAI-compatible backend over real HTTP against a fault-injecting loopback server."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
import traceback
from email.utils import formatdate

import pytest

from pipelines.llm.base import Generation, SamplingParams
from pipelines.llm.cache import BufferedWriter, CallLedger, ResponseCache, cache_key
from pipelines.llm.openai_compat import OpenAICompatibleBackend
from pipelines.llm.retry import retry_after_s as _retry_after_s
from pipelines.llm.pricing import PriceTable
from storage import llm_log
from storage.registry import EndpointRecord, insert_endpoint, set_price
from core import secrets
from core.errors import (AuthenticationFailed, BackendError, BackendTimeout, BadInput, BadResponse,
                           EndpointUnreachable, RateLimited)
from tests.fixtures.core import REPO_ROOT, free_port

MODEL = "fake-model"
HELLO = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there friend"}]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def make_backend(server, db=None, **kwargs) -> OpenAICompatibleBackend:
    kwargs.setdefault("timeout_s", 2.0)
    kwargs.setdefault("max_retries", 3)
    kwargs.setdefault("retry_base_s", 0.01)
    kwargs.setdefault("retry_max_wait_s", 1.0)
    if db is not None:
        kwargs.setdefault("cache", ResponseCache(db))
        kwargs.setdefault("ledger", CallLedger(db, job_id="job_test", stage="responses"))
        kwargs.setdefault("prices", PriceTable.load(db))
    base_url = server if isinstance(server, str) else server.base_url
    return OpenAICompatibleBackend(base_url, MODEL, kwargs.pop("api_key", None), **kwargs)


# A wrong key, built at run time so it never reads like a real one in git.
WRONG_KEY = "sk-" + "-".join(["nope"] * 4)


def test_success_records_usage_cost_and_ledger_row(fake_openai, db):
    set_price(db, MODEL, 2.0, 8.0)
    backend = make_backend(fake_openai, db)
    gen = backend.generate(HELLO, SamplingParams(temperature=0, max_tokens=16))
    backend.close()
    assert gen.text == "echo #1: hello there friend"
    assert (gen.prompt_tokens, gen.completion_tokens) == (5, 5)   # the server counts words
    assert gen.cost_usd == pytest.approx((5 * 2.0 + 5 * 8.0) / 1e6)
    assert gen.finish_reason == "stop" and not gen.cached and gen.latency_s > 0
    rows = llm_log.calls_for_job(db, "job_test")
    assert len(rows) == 1
    row = rows[0]
    assert (row["backend"], row["model"], row["stage"], row["status"]) == ("openai", MODEL, "responses", "ok")
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached"]) == (5, 5, False)
    assert row["cost_usd"] == pytest.approx(gen.cost_usd) and row["cache_key"] == gen.cache_key
    assert row["id"] == gen.call_id


def test_prices_fall_back_to_default_row_then_free(db):
    set_price(db, "*", 1.0, 1.0)
    set_price(db, "big", 10.0, 30.0)
    table = PriceTable.load(db)
    assert table.cost_usd("big", 1_000_000, 1_000_000) == pytest.approx(40.0)
    assert table.cost_usd("other", 500_000, 500_000) == pytest.approx(1.0)
    assert PriceTable({}).cost_usd("other", 10**6, 10**6) == 0.0


def test_rerun_hits_the_cache_and_pays_nothing(fake_openai, db):
    set_price(db, MODEL, 1.0, 1.0)
    batch = [user(f"question {i}") for i in range(3)]
    first = make_backend(fake_openai, db)
    results = first.generate_batch(batch)
    first.close()
    assert fake_openai.stats.requests == 3 and all(not r.cached for r in results)

    rerun = make_backend(fake_openai, db)   # a new process would see the same: fresh objects, same DB
    again = rerun.generate_batch(batch)
    single = rerun.generate(batch[0])
    rerun.close()
    assert fake_openai.stats.requests == 3
    assert [g.text for g in again] == [g.text for g in results]
    assert all(g.cached and g.cost_usd == 0.0 and g.backend == "openai" for g in [*again, single])
    totals = llm_log.ledger_totals(db, "job_test", group_by=())[0]
    assert (totals["calls"], totals["cached_calls"], totals["errors"]) == (7, 4, 0)
    assert totals["cost_usd"] == pytest.approx(sum(g.cost_usd for g in results))


def test_a_different_seed_is_a_different_cache_entry(fake_openai, db):
    backend = make_backend(fake_openai, db)
    a = backend.generate(HELLO, SamplingParams(seed=1))
    b = backend.generate(HELLO, SamplingParams(seed=2))
    backend.close()
    assert a.cache_key != b.cache_key and fake_openai.stats.requests == 2


def test_429_burst_then_success_honours_retry_after(fake_openai):
    fake_openai.configure(fail_429_first=2, retry_after=0.3)
    backend = make_backend(fake_openai, retry_base_s=0.001)
    start = time.perf_counter()
    gen = backend.generate(HELLO)
    elapsed = time.perf_counter() - start
    assert gen.text.startswith("echo #3")
    assert fake_openai.stats.requests == 3 and fake_openai.stats.by_status == {429: 2, 200: 1}
    assert elapsed >= 0.55   # two waits of Retry-After 0.3 s, not the 1 ms backoff


def test_500_then_success(fake_openai):
    fake_openai.configure(fail_500_first=2)
    gen = make_backend(fake_openai).generate(HELLO)
    assert gen.text.startswith("echo #3") and fake_openai.stats.by_status == {500: 2, 200: 1}


def test_dropped_connection_then_success(fake_openai):
    fake_openai.configure(close_first=1)
    gen = make_backend(fake_openai).generate(HELLO)
    assert gen.text.startswith("echo #2") and fake_openai.stats.requests == 2


def test_persistent_429_raises_rate_limited_after_retries(fake_openai, db):
    fake_openai.configure(fail_429_first=1000, retry_after=0)
    backend = make_backend(fake_openai, db, max_retries=2)
    with pytest.raises(RateLimited, match=r"rate-limiting .*gave up after 3 attempts.*Lower the endpoint's concurrency"):
        backend.generate(HELLO)
    backend.close()
    assert fake_openai.stats.requests == 3
    [row] = llm_log.calls_for_job(db, "job_test")
    assert row["status"] == "error" and "HTTP 429" in row["error"] and row["cost_usd"] == 0.0


def test_hang_past_timeout_raises_backend_timeout(fake_openai):
    fake_openai.configure(hang_s=1.5)
    backend = make_backend(fake_openai, timeout_s=0.2, max_retries=1)
    start = time.perf_counter()
    with pytest.raises(BackendTimeout, match=r"did not answer within 0.2 s .*Raise the endpoint's timeout"):
        backend.generate(HELLO)
    assert time.perf_counter() - start < 1.2 and fake_openai.stats.requests == 2


def test_unreachable_port_says_how_to_start_the_server():
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = make_backend(url, max_retries=1)
    with pytest.raises(EndpointUnreachable, match=r"cannot reach http://127\.0\.0\.1:\d+/v1: .*python -m studio up"):
        backend.generate(HELLO)


def test_wrong_key_is_not_retried_and_never_shown(fake_openai, db):
    wrong = "sk-wrong-7f3a9c0d1e2b4a5968776655"
    fake_openai.configure(required_key="sk-the-right-one-000000000000")
    backend = make_backend(fake_openai, db, api_key=wrong, api_key_env="FAKE_OPENAI_KEY")
    with pytest.raises(AuthenticationFailed, match=r"rejected the API key \(HTTP 401\).*set FAKE_OPENAI_KEY") as info:
        backend.generate(HELLO)
    backend.close()
    assert fake_openai.stats.requests == 1   # 401 is never retried
    assert wrong not in str(info.value) and wrong not in repr(info.value) and "Incorrect API key" in str(info.value)
    assert wrong not in "".join(traceback.format_exception(info.value))   # also not in a logged traceback
    [row] = llm_log.calls_for_job(db, "job_test")
    assert row["status"] == "error" and wrong not in row["error"]


def test_garbage_and_choiceless_bodies_raise_bad_response(fake_openai):
    backend = make_backend(fake_openai)
    fake_openai.configure(garbage=True)
    with pytest.raises(BadResponse, match=r"not JSON.*ends with /v1"):
        backend.generate(HELLO)
    assert fake_openai.stats.requests == 1
    fake_openai.configure(missing_choices=True)
    with pytest.raises(BadResponse, match="without any choices"):
        backend.generate(HELLO)


def test_missing_usage_is_estimated(fake_openai):
    fake_openai.configure(omit_usage=True)
    gen = make_backend(fake_openai).generate(user("a b c d e f g h i j k l m n o p"))
    assert gen.prompt_tokens > 0 and gen.completion_tokens > 0


def test_batch_respects_concurrency_and_keeps_going_past_a_failure(fake_openai, db):
    fake_openai.configure(latency_s=0.1)
    backend = make_backend(fake_openai, db, concurrency=4)
    batch = [user(f"item {i}" + (" REFUSE" if i == 7 else "")) for i in range(20)]
    fake_openai.configure(latency_s=0.1, reject_marker="REFUSE")
    start = time.perf_counter()
    results = backend.generate_batch(batch)
    elapsed = time.perf_counter() - start
    backend.close()
    assert fake_openai.stats.max_in_flight == 4          # used the slots, never more
    assert elapsed >= 0.45                               # 20 items / 4 slots x 0.1 s
    errors = [i for i, r in enumerate(results) if isinstance(r, BackendError)]
    assert errors == [7] and "HTTP 400" in str(results[7])
    assert all(isinstance(r, Generation) and r.text.endswith(f"item {i}") for i, r in enumerate(results) if i != 7)
    totals = llm_log.ledger_totals(db, "job_test", group_by=("model", "status"))
    assert {(t["status"], t["calls"]) for t in totals} == {("ok", 19), ("error", 1)}


def test_concurrent_agenerate_calls_share_the_semaphore(fake_openai):
    fake_openai.configure(latency_s=0.05)
    backend = make_backend(fake_openai, concurrency=3)

    async def many():
        return await asyncio.gather(*(backend.agenerate(user(f"q{i}")) for i in range(9)))

    assert len(asyncio.run(many())) == 9 and fake_openai.stats.max_in_flight == 3


def test_stream_yields_pieces_and_records_the_call(fake_openai, db):
    backend = make_backend(fake_openai, db)
    pieces = list(backend.stream(user("tell me a story")))
    backend.close()
    assert len(pieces) > 3 and "".join(pieces) == "echo #1: tell me a story"
    [row] = llm_log.calls_for_job(db, "job_test")
    assert row["status"] == "ok" and row["completion_tokens"] > 0


def test_stream_with_a_wrong_key_raises(fake_openai):
    fake_openai.configure(required_key="right")
    backend = make_backend(fake_openai, api_key=WRONG_KEY)
    with pytest.raises(AuthenticationFailed, match="rejected the API key"):
        list(backend.stream(HELLO))


def test_ledger_group_by_is_an_allow_list(db):
    with pytest.raises(BadInput, match=r"Cannot group the ledger by 'model; drop table'.*Group by any of"):
        llm_log.ledger_totals(db, group_by=("model; drop table",))


def test_from_endpoint_uses_the_secrets_file_and_keeps_the_key_out_of_duckdb(fake_openai, db, studio_home):
    key = "sk-proj-secretvalue0123456789abcdef"
    fake_openai.configure(required_key=key)
    secrets.save_secret("fake", key)
    record = insert_endpoint(db, EndpointRecord(name="fake", base_url=fake_openai.base_url, model=MODEL,
                                                api_key_secret="fake", concurrency=2, timeout_s=2, max_retries=1))
    backend = OpenAICompatibleBackend.from_endpoint(record, db, job_id="job_ep", stage="try")
    gen = backend.generate(HELLO)
    backend.close()
    assert gen.text.startswith("echo #1") and backend.concurrency == 2
    [row] = llm_log.calls_for_job(db, "job_ep")
    assert row["endpoint_id"] == record.id and row["stage"] == "try"
    assert stat.S_IMODE(os.stat(secrets.secrets_path()).st_mode) == 0o600
    with db.session() as cur:   # no text column of any table holds the key ...
        columns = cur.execute("SELECT table_name, column_name FROM information_schema.columns "
                              "WHERE data_type IN ('VARCHAR', 'JSON')").fetchall()
        for table, column in columns:
            hits = cur.execute(f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                               [f"%{key}%"]).fetchone()[0]
            assert hits == 0, f"{table}.{column} holds the API key"
    db.close()   # ... and neither do the file's bytes
    for path in studio_home.glob("studio.duckdb*"):
        assert key.encode() not in path.read_bytes()


def test_from_endpoint_without_a_key_says_where_to_put_it(db, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    record = EndpointRecord(name="remote", base_url="http://127.0.0.1:9/v1", model=MODEL, api_key_env="NO_SUCH_KEY_VAR")
    expected = r"No API key found for endpoint .remote.*set NO_SUCH_KEY_VAR.*endpoints add remote URL MODEL --ask-key"
    with pytest.raises(AuthenticationFailed, match=expected):
        OpenAICompatibleBackend.from_endpoint(record)


def test_cache_buffers_writes_and_loses_nothing_on_close(db):
    cache = ResponseCache(db, batch_size=1000, flush_interval_s=60)
    params = SamplingParams()
    keys = [cache_key(MODEL, user(f"p{i}"), params) for i in range(5)]
    for i, key in enumerate(keys):
        cache.put(key, Generation(text=f"t{i}", model=MODEL, backend="openai", completion_tokens=i), {"i": i})
    assert llm_log.count_cache_entries(db) == 0          # still buffered ...
    assert cache.get(keys[2]).text == "t2"                 # ... but already served
    cache.close()
    assert llm_log.count_cache_entries(db) == 5
    assert llm_log.get_cached(db, keys[4])["request"] == {"i": 4}
    llm_log.put_cached(db, [{"cache_key": keys[0], "model": MODEL, "response_text": "other"}])  # idempotent
    assert llm_log.get_cached(db, keys[0])["response_text"] == "t0"
    assert set(ResponseCache(db).get_many([*keys, "missing"])) == set(keys)


def test_ledger_flushes_on_its_interval_without_close(db):
    ledger = CallLedger(db, job_id="job_bg", batch_size=1000, flush_interval_s=0.05)
    ledger.record(backend="openai", model=MODEL, status="ok", prompt_tokens=1, completion_tokens=1)
    deadline = time.monotonic() + 3
    while not llm_log.calls_for_job(db, "job_bg") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(llm_log.calls_for_job(db, "job_bg")) == 1
    ledger.close()


def test_writer_keeps_rows_when_a_write_fails_and_writes_late_rows_at_once():
    written: list[list[int]] = []

    def write(rows):
        written.append(list(rows))
        if len(written) == 1:
            raise OSError("disk full")

    writer = BufferedWriter(write, batch_size=100, interval_s=60)
    writer.add(1)
    writer.add(2)
    with pytest.raises(OSError, match="disk full"):
        writer.flush()
    assert writer.pending() == [1, 2]
    writer.add(3)
    writer.close()
    assert written[-1] == [1, 2, 3] and writer.pending() == []
    writer.add(4)   # after close: written immediately, not dropped
    assert written[-1] == [4]


def test_buffered_rows_reach_the_database_at_interpreter_exit(studio_home, db):
    script = (
        "from pipelines.llm.base import Generation\n"
        "from pipelines.llm.cache import CallLedger, ResponseCache\n"
        "from storage.db import get_database\n"
        "db = get_database()\n"
        "cache = ResponseCache(db, batch_size=1000, flush_interval_s=600)\n"
        "cache.put('k1', Generation(text='kept', model='m', backend='openai'), {})\n"
        "CallLedger(db, job_id='job_exit', batch_size=1000, flush_interval_s=600)"
        ".record(backend='openai', model='m', status='ok')\n"
    )   # exits without close()
    subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, check=True, timeout=60,
                   env={**os.environ, "STUDIO_HOME": str(studio_home)})
    assert llm_log.get_cached(db, "k1")["response_text"] == "kept"
    assert len(llm_log.calls_for_job(db, "job_exit")) == 1


def test_generate_works_when_the_caller_already_runs_a_loop(fake_openai):
    backend = make_backend(fake_openai)

    async def page_callback():   # e.g. Streamlit or Jupyter: a loop is already running
        return backend.generate(HELLO)

    assert asyncio.run(page_callback()).text.startswith("echo #1")
    assert backend.generate(HELLO).text.startswith("echo #2")   # a second loop gets its own client


def test_cache_key_is_canonical():
    params = SamplingParams(temperature=0.2)
    a = cache_key(MODEL, [{"role": "user", "content": "x"}], params)
    assert a == cache_key(MODEL, [{"content": "x", "role": "user"}], SamplingParams(temperature=0.2))
    assert a != cache_key(MODEL, [{"role": "user", "content": "x"}], SamplingParams(temperature=0.3))
    assert a != cache_key("other", [{"role": "user", "content": "x"}], params)


def test_retry_after_header_forms():
    assert _retry_after_s({"retry-after": "2"}) == 2.0
    assert _retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert 5 <= _retry_after_s({"retry-after": formatdate(time.time() + 8, usegmt=True)}) <= 8
    assert _retry_after_s({"retry-after": "soon"}) is None and _retry_after_s({}) is None
