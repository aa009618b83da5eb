"""Review benchmark: push and pull throughput of the studio vs the Argilla SDK, and the no-change pull.

The same preference records, the same dataset settings and the same batch size on both sides:
the studio's ``push_records`` (REST bulk upsert by stable external id) against the SDK's own
``ds.records.log(...)``; the studio's ``pull_round`` (read every record with responses into
DuckDB) against iterating ``ds.records(with_responses=True)``. Then a dataset of ``--nochange``
records is pulled twice and the second pull, with nothing changed, is timed (target: under 1 s).
Ratios > 1 mean the studio is faster (target: at least 0.9).

Uses the Argilla that ``get_connection()`` finds (STUDIO_ARGILLA_URL + ARGILLA_API_KEY, or the
embedded one); with ``--start`` it starts a private embedded Argilla in a temp folder.

    .venv/bin/python -m benchmarks.bench_review [--records 1000] [--nochange 10000] [--start]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import _report  # noqa: E402


def _pairs(n: int) -> list[dict]:
    return [{"id": f"pp{i}", "run_id": "bench", "prompt": f"Question {i}: explain topic {i % 97} briefly.",
             "chosen": f"A careful answer number {i}. " * 12, "rejected": f"A weaker answer {i}. " * 8,
             "chosen_model": "model-a", "rejected_model": "model-b", "judge_model": "judge", "chosen_score": 4.0,
             "rejected_score": 2.0, "swap_agreement": i % 5 != 0, "confidence": (i % 100) / 100} for i in range(n)]


def _sdk_settings(rg):
    from pipelines.review.dataset import PREFERRED

    return rg.Settings(
        fields=[rg.ChatField("prompt"), rg.TextField("response_a", use_markdown=True),
                rg.TextField("response_b", use_markdown=True)],
        questions=[rg.LabelQuestion("preferred", labels=PREFERRED), rg.RatingQuestion("rating_a", [1, 2, 3, 4, 5], required=False),
                   rg.RatingQuestion("rating_b", [1, 2, 3, 4, 5], required=False),
                   rg.TextQuestion("corrected", required=False), rg.TextQuestion("rationale", required=False)],
        metadata=[rg.TermsMetadataProperty("model_a"), rg.TermsMetadataProperty("model_b"),
                  rg.FloatMetadataProperty("judge_score"), rg.TermsMetadataProperty("swap_agreement"),
                  rg.IntegerMetadataProperty("length_diff")],
        distribution=rg.TaskDistribution(min_submitted=1))


def _sdk_records(rg, rows: list[dict]) -> list:
    from pipelines.review.push import argilla_record

    out = []
    for row in rows:
        item = argilla_record("preference", {**row, "review_record_id": row["id"], "order_swapped": False},
                              {"preferred": "x", "rating_a": "x", "rating_b": "x"})
        out.append(rg.Record(id=row["id"], fields=item["fields"], metadata=item["metadata"], suggestions=[
            rg.Suggestion(question_name=name, value=s["value"], score=s.get("score"), agent=s["agent"])
            for name, s in zip(("preferred", "rating_a", "rating_b"), item["suggestions"])]))
    return out


def bench_sdk(conn, rows: list[dict], batch_size: int) -> tuple[float, float]:
    import argilla as rg

    client = rg.Argilla(api_url=conn.url, api_key=conn.api_key)
    ds = rg.Dataset(name=f"bench-sdk-{uuid.uuid4().hex[:8]}", workspace="default", settings=_sdk_settings(rg),
                    client=client)
    ds.create()
    records = _sdk_records(rg, rows)
    start = time.perf_counter()
    ds.records.log(records, batch_size=batch_size)
    push_s = time.perf_counter() - start
    start = time.perf_counter()
    n = sum(1 for _ in ds.records(batch_size=1000, with_responses=True))
    pull_s = time.perf_counter() - start
    assert n == len(rows), (n, len(rows))
    ds.delete()
    return push_s, pull_s


def bench_studio(conn, db, n: int, batch_size: int, name: str) -> tuple[float, float, float, dict]:
    from pipelines.review.client import ArgillaClient
    from pipelines.review.pull import pull_round
    from pipelines.review.push import PushRequest, push_records
    from storage import review as store

    with ArgillaClient(conn.url, conn.api_key) as client:
        marks: dict[str, float] = {}

        def progress(stage=None, done=None, **_):  # time the sending only, as the SDK's log() (create() is apart)
            if stage == "sending records" and done == 0:
                marks["start"] = time.perf_counter()

        result = push_records(db, client, PushRequest(dataset_name=name, limit=n, batch_size=batch_size), progress)
        push_s = time.perf_counter() - marks["start"]
        assert result.sent == n, result
        start = time.perf_counter()
        pull_round(db, client, store.get_round(db, result.round_id), force=True)
        pull_s = time.perf_counter() - start
        start = time.perf_counter()
        again = pull_round(db, client, store.get_round(db, result.round_id))
        nochange_s = time.perf_counter() - start
        assert not again.changed
    return push_s, pull_s, nochange_s, result.to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=_report.size(1000, 200), help="records for the push/pull comparison")
    parser.add_argument("--nochange", type=int, default=_report.size(10_000, 1000), help="records in the no-change pull dataset")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--start", action="store_true", help="start a private embedded Argilla")
    args = parser.parse_args(argv)
    os.environ["STUDIO_HOME"] = tempfile.mkdtemp(prefix="bench-review-")
    server = None
    if args.start or not os.environ.get("STUDIO_ARGILLA_URL"):  # by default a private embedded Argilla
        from tests.fixtures.argilla import start_argilla_test_server

        server = start_argilla_test_server(Path(tempfile.mkdtemp(prefix="bench-argilla-")) / "home")
        os.environ["STUDIO_ARGILLA_URL"], os.environ["ARGILLA_API_KEY"] = server.url, server.api_key
    try:
        from storage.db import get_database
        from storage.pairs import insert_preference_pairs
        from studio.argilla_conn import get_connection

        conn, db = get_connection(), get_database()
        rows = _pairs(max(args.records, args.nochange))
        insert_preference_pairs(db, rows)
        # warm-up, then best of two alternating runs on each side (the 2-core VM's timing noise is large)
        bench_sdk(conn, rows[: min(50, args.records)], args.batch_size)
        sdk, studio = [], []
        for _ in range(2):
            sdk.append(bench_sdk(conn, rows[: args.records], args.batch_size))
            studio.append(bench_studio(conn, db, args.records, args.batch_size, f"bench-{uuid.uuid4().hex[:8]}")[:2])
        sdk_push, sdk_pull = min(x[0] for x in sdk), min(x[1] for x in sdk)
        push_s, pull_s = min(x[0] for x in studio), min(x[1] for x in studio)
        n = args.records
        lines = [
            f"push {n} records, batch {args.batch_size}: SDK {n / sdk_push:,.0f} rec/s, studio {n / push_s:,.0f} "
            f"rec/s -> ratio {sdk_push / push_s:.2f}x (target >= 0.9x)",
            f"pull {n} records (with responses): SDK iteration {n / sdk_pull:,.0f} rec/s, studio pull into DuckDB "
            f"{n / pull_s:,.0f} rec/s -> ratio {sdk_pull / pull_s:.2f}x (target >= 0.9x)"]
        _report.params(records=n, batch_size=args.batch_size, nochange=args.nochange)
        _report.record("review push, studio / Argilla SDK records.log", n / push_s, "records/s", baseline=n / sdk_push,
                       ratio=sdk_push / push_s, target=">= 0.9x", met=sdk_push / push_s >= 0.9)
        _report.record("review pull, studio / Argilla SDK iteration", n / pull_s, "records/s", baseline=n / sdk_pull,
                       ratio=sdk_pull / pull_s, target=">= 0.9x", met=sdk_pull / pull_s >= 0.9)
        if args.nochange:
            big_push, big_pull, nochange_s, _ = bench_studio(conn, db, args.nochange, 500, f"bench-big-{uuid.uuid4().hex[:8]}")
            lines.append(f"{args.nochange} records: push {big_push:.1f} s ({args.nochange / big_push:,.0f} rec/s), full "
                         f"pull {big_pull:.2f} s, pull with nothing changed {nochange_s * 1000:.0f} ms (target < 1000 ms)")
            _report.record(f"review pull with nothing changed, {args.nochange:,} records", nochange_s * 1000, "ms",
                           target="< 1000 ms", met=nochange_s < 1.0)
        _report.emit(lines)
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
