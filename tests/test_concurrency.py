"""Many processes, one DuckDB file: a background job writes results while the app renders pages and
the CLI runs `status`. Nobody sees a lock error and no write is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

from streamlit.testing.v1 import AppTest

from storage import pairs
from storage.db import get_database
from tests.fixtures.core import REPO_ROOT

WRITER = textwrap.dedent("""
    import sys, time
    from storage import pairs
    from storage.db import get_database
    from studio.jobs import reporter as job_reporter
    from storage.ids import new_id
    from storage import jobs

    batches, size = int(sys.argv[1]), int(sys.argv[2])
    db = get_database()
    job_id = new_id("job")
    jobs.insert_job(db, job_id, "generation", "concurrency test writer", {})
    reporter = job_reporter(job_id, show_bar=False)
    for b in range(batches):
        rows = [{"prompt": f"b{b}-{i}", "chosen": "good", "rejected": "bad", "run_id": "writer"} for i in range(size)]
        pairs.insert_preference_pairs(db, rows)
        reporter.update(stage="responses", done=b + 1, total=batches, unit="batch")
        time.sleep(0.02)
    reporter.finish()
    print("lock_waits", db.lock_waits, flush=True)
""")


def _env(studio_home) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["STUDIO_HOME"] = str(studio_home)
    return env


def test_job_app_and_cli_share_the_database(studio_home):
    get_database().close()  # create + migrate first, then let go of the file
    batches, size = 300, 25
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(batches), str(size)], cwd=REPO_ROOT,
                              env=_env(studio_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    renders = statuses = 0
    deadline = time.monotonic() + 240
    while writer.poll() is None and time.monotonic() < deadline:
        for page in ("pages/home.py", "pages/models.py"):
            app = AppTest.from_file(str(REPO_ROOT / page), default_timeout=60).run()
            assert not app.exception, f"{page}: {app.exception}"
            renders += 1
        status = subprocess.run([sys.executable, "-m", "studio", "status", "--json"], cwd=REPO_ROOT,
                                env=_env(studio_home), capture_output=True, text=True, timeout=120)
        assert status.returncode == 0, status.stderr
        counts = json.loads(status.stdout)["counts"]
        assert counts["preference_pairs"] % size == 0  # never a half-written batch
        statuses += 1
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert "lock" not in err.lower()
    assert renders >= 4 and statuses >= 2, "the writer finished before the app and CLI got a turn"
    db = get_database()
    writer_waits = int(out.split("lock_waits")[-1])
    assert writer_waits + db.lock_waits > 0, "no process ever had to wait: the test did not exercise contention"
    assert pairs.count_preference_pairs(db) == batches * size
    from storage import jobs

    [job] = jobs.list_jobs(db, kind="generation")
    assert job.status == "succeeded" and job.progress["done"] == batches
