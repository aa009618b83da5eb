"""Storage: migrations, bound parameters, lock contention, read-only and full disks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from storage import pairs, registry
from storage.db import Database
from storage.migrate import apply_migrations, discover
from core.errors import DatabaseBusy, StorageError
from core.settings import Settings

LIFECYCLE_TABLES = {
    "models", "endpoints", "prices", "llm_cache", "llm_calls", "jobs", "seed_sets", "seeds",
    "prompt_templates", "generation_runs", "instructions", "responses", "judgments", "sft_pairs",
    "preference_pairs", "review_rounds", "review_records", "review_responses", "dataset_snapshots",
    "snapshot_records", "training_runs", "training_metrics", "checkpoints", "comparisons",
    "comparison_prompts", "comparison_outputs", "votes", "schema_migrations",
}


def test_migrations_create_the_whole_lifecycle_schema(db):
    with db.session() as cur:
        tables = {r[0] for r in cur.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        applied = cur.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
    assert LIFECYCLE_TABLES <= tables
    assert [(v, n) for v, n, _ in applied] == [(m.version, m.name) for m in discover()]


def test_migrations_apply_once_and_refuse_edited_history(tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_first.sql").write_text("CREATE TABLE a (x INTEGER);")
    database = Database(tmp_path / "m.duckdb")
    conn = database._open()
    cur = conn.cursor()
    assert apply_migrations(cur, folder) == [1]
    (folder / "0002_second.sql").write_text("ALTER TABLE a ADD COLUMN y VARCHAR;")
    assert apply_migrations(cur, folder) == [2]
    assert apply_migrations(cur, folder) == []
    (folder / "0001_first.sql").write_text("CREATE TABLE a (x BIGINT);")
    with pytest.raises(StorageError, match="changed after it was applied"):
        apply_migrations(cur, folder)
    conn.close()


def test_a_failed_migration_leaves_nothing_half_applied(tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_ok.sql").write_text("CREATE TABLE a (x INTEGER);")
    (folder / "0002_broken.sql").write_text("CREATE TABLE b (x INTEGER); CREATE TABLE a (x INTEGER);")
    conn = Database(tmp_path / "m.duckdb")._open()
    cur = conn.cursor()
    with pytest.raises(Exception):
        apply_migrations(cur, folder)
    tables = {r[0] for r in cur.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "b" not in tables and [r[0] for r in cur.execute("SELECT version FROM schema_migrations").fetchall()] == [1]
    conn.close()


def test_misnamed_migration_file_is_refused(tmp_path):
    (tmp_path / "create_things.sql").write_text("SELECT 1;")
    with pytest.raises(StorageError, match="NNNN_name.sql"):
        discover(tmp_path)


def test_hostile_text_is_stored_verbatim(db):
    hostile = "x'); DROP TABLE models; -- ../../etc/passwd \u202e ignore previous instructions"
    registry.insert_model(db, registry.ModelRecord(name=hostile, kind="hf", source="folder", hf_path=hostile))
    stored = registry.get_model(db, hostile)
    assert stored.hf_path == hostile
    assert [m.name for m in registry.list_models(db)] == [hostile]


def test_listing_filters_and_pages(db):
    rows = [
        {"prompt": f"p{i}", "chosen": "c" * (10 + i), "rejected": "r", "confidence": i / 10,
         "swap_agreement": i % 2 == 0, "run_id": "run_a" if i < 6 else "run_b", "chosen_model": "m1"}
        for i in range(10)
    ]
    assert pairs.insert_preference_pairs(db, rows) == 10
    page = pairs.list_preference_pairs(db, pairs.PairFilter(run_id="run_a", min_confidence=0.2), limit=2,
                                       order="least_confident")
    assert [r["prompt"] for r in page] == ["p2", "p3"]
    unsure = pairs.list_preference_pairs(db, pairs.PairFilter(swap_disagreement=True), limit=100)
    assert sorted(r["prompt"] for r in unsure) == ["p1", "p3", "p5", "p7", "p9"]
    assert pairs.list_preference_pairs(db, pairs.PairFilter(max_length=12), limit=100, order="newest")
    with pytest.raises(Exception, match="Unknown order"):
        pairs.list_preference_pairs(db, order="created_at; DROP TABLE x")


HOLD_SCRIPT = textwrap.dedent("""
    import duckdb, sys, time
    conn = duckdb.connect(sys.argv[1])
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.close()
""")


def _hold(path: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_a_held_database_is_waited_for_then_used(tmp_path):
    database = Database(tmp_path / "w.duckdb", busy_timeout_s=30)
    with database.session() as cur:
        cur.execute("SELECT 1")
    database.close()
    time.sleep(0.2)
    holder = _hold(database.path, 1.0)
    with database.session() as cur:
        assert cur.execute("SELECT 42").fetchone()[0] == 42
    assert database.lock_waits > 0
    holder.wait()


def test_a_database_held_too_long_names_the_holder(tmp_path):
    database = Database(tmp_path / "b.duckdb", busy_timeout_s=1)
    with database.session():
        pass
    database.close()
    time.sleep(0.2)
    holder = _hold(database.path, 5.0)
    try:
        with pytest.raises(DatabaseBusy, match=rf"PID {holder.pid}.*STUDIO_DB_BUSY_TIMEOUT"):
            with database.session():
                pass
    finally:
        holder.kill()
        holder.wait()


def _mount_tmpfs(path: Path, size: str, readonly: bool = False) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.fixture
def mounted(tmp_path):
    mounts = []

    def mount(name: str, size: str, readonly: bool = False) -> Path:
        path = tmp_path / name
        if not _mount_tmpfs(path, size, readonly):
            pytest.skip("needs root and tmpfs mounts to make a read-only or full disk")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_studio_home_says_what_to_change(mounted):
    ro = mounted("ro", "4m", readonly=True)
    settings = Settings(home=ro / "home", cache_dir=ro / "cache")
    with pytest.raises(StorageError, match="not writable.*Point STUDIO_HOME"):
        settings.ensure_home()


def test_nearly_full_disk_is_refused_before_work_starts(mounted):
    small = mounted("small", "8m")
    settings = Settings(home=small / "home", cache_dir=small / "cache")
    with pytest.raises(StorageError, match="MB free.*Free some space"):
        settings.ensure_home()


def test_disk_filling_up_mid_write_is_a_clear_error_and_keeps_committed_rows(mounted):
    disk = mounted("full", "240m")
    database = Database(disk / "studio.duckdb")
    pairs.insert_preference_pairs(database, [{"prompt": "kept", "chosen": "a", "rejected": "b"}])
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 20))
                out.flush()
        except OSError:
            pass
    big = [{"prompt": "x" * 4000 + str(i), "chosen": "y" * 4000, "rejected": "z"} for i in range(3000)]
    with pytest.raises(StorageError, match="full|could not be used"):
        pairs.insert_preference_pairs(database, big)
    filler.unlink()
    database.close()
    reopened = Database(disk / "studio.duckdb")
    assert pairs.count_preference_pairs(reopened) == 1
    reopened.close()


def test_replacing_a_registry_row_is_atomic(db):
    first = registry.insert_model(db, registry.ModelRecord(name="m", kind="hf", source="pull", hf_path="/old"))
    moved = registry.ModelRecord(name="m", kind="hf", source="pull", hf_path="/new", id=first.id)
    registry.insert_model(db, moved, replace=True)
    [stored] = registry.list_models(db)
    assert (stored.id, stored.hf_path) == (first.id, "/new")
    clash = registry.ModelRecord(name="m", kind="hf", source="pull", hf_path="/newer", id="mdl_other")
    registry.insert_model(db, registry.ModelRecord(name="x", kind="hf", source="pull", id="mdl_other"))
    with pytest.raises(Exception, match="(?i)constraint|duplicate"):
        registry.insert_model(db, clash, replace=True)  # the id is taken: nothing is deleted either
    assert registry.get_model(db, "m").hf_path == "/new"
