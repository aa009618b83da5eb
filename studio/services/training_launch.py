"""A run trained by several processes on this machine (``spec.processes`` > 1, the Train page's
"processes" field): the run's job launches them, and each of them finds its place.

The job process (``python -m studio --job-id J train --run RUN``) waits for the device queue's turn as
any run does, then starts ``accelerate launch --num_processes N -m studio train --run RUN``
(``pipelines.train.scaleout.local_launch_command``) and waits for it, holding the turn. Each rank
enters ``execute_rank``: it joins the launch's process group, skips the queue (the job holds the turn;
without a launching job, rank 0 alone waits for it), and trains with ``run_training(ranks=...)``, where
only rank 0 records. Rank 0 reports progress into the job's row, so the run shows like any other.

Cancel reaches every rank: the cancel marker (which ``cancel_run`` touches, and the job touches when
it is asked to stop) is checked by each rank at each step, and the ranks' stop vote makes them all
stop at the same step and save one checkpoint together.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from typing import Callable

from core.progress import ProgressReporter
from pipelines.train.distributed import Ranks
from pipelines.train.scaleout import local_launch_command
from studio import jobs
from studio.services import training_queue as queue

JOB_ENV = "STUDIO_TRAIN_JOB_ID"  # the job whose row rank 0 reports progress into
POLL_S = 0.2


class _RankProgress(jobs.JobSink):
    """Rank 0's progress into the launching job's row; the job itself marks its start and its end."""

    def started(self) -> None:
        return None

    def finished(self, status: str, error: str | None) -> None:
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_processes(run_id: str, processes: int, job_id: str | None, should_stop: Callable[[], bool]) -> int:
    """Start the run's ranks with ``accelerate launch`` and wait for them; returns the launcher's exit code.
    A stop request becomes the cancel marker, which every rank reads."""
    argv = local_launch_command(run_id, processes, _free_port())
    env = dict(os.environ, **{queue.HELD_ENV: run_id, JOB_ENV: job_id or ""})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(jobs.REPO_ROOT), env.get("PYTHONPATH")]))
    print(f"launching {processes} training processes: {shlex.join(argv)}", flush=True)
    proc = subprocess.Popen(argv, cwd=jobs.REPO_ROOT, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    marker = queue.cancel_marker(run_id)
    try:
        while proc.poll() is None:
            if should_stop() and not marker.exists():
                marker.touch()
            time.sleep(POLL_S)
    finally:
        if proc.poll() is None:  # this process is being torn down (a second Ctrl-C): its ranks go with it
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    return proc.returncode


def exit_message(code: int) -> str:
    return (f"The training processes ended with exit code {code} without recording a result (one of them "
            "crashed or was killed); the job's log has their output.")


def execute_rank(run_id: str, register_job: Callable[[], str]) -> None:
    """One rank of a launch, through the one job runner: join the others, take the device turn (rank 0,
    unless the launching job holds it), train; returns once rank 0 has recorded the run's end, so every
    rank reads the same status. Launched by hand (``runs accelerate``), rank 0 registers itself as the
    run's job (``register_job``): its liveness and progress then show like any job's."""
    from pipelines.train.runner import run_training
    from pipelines.train.spec import cuda_available
    from studio.runner import Outcome, run_job

    ranks = Ranks.from_env().start(cuda_available())
    held = os.environ.get(queue.HELD_ENV) == run_id
    job_id = register_job() if ranks.is_main and not held else None
    launcher_job = os.environ.get(JOB_ENV) if held and ranks.is_main else None

    def work(reporter, should_stop) -> str:
        go, fd = queue.rank_turn(run_id, ranks, should_stop)
        if not go:
            return "not started"
        progress = ProgressReporter(_RankProgress(launcher_job), show_bar=False) if launcher_job else \
            (reporter if job_id else None)
        try:
            status = run_training(run_id, reporter=progress, should_stop=should_stop, ranks=ranks).status
        finally:
            queue.release(fd)
        if progress is not None and progress is not reporter:
            progress.finish(status)  # the last progress event into the launching job's row
        return status

    def outcome(status: str) -> Outcome:
        if status == "not started":
            return Outcome("cancelled", "The run was not queued, or was cancelled while it waited.")
        return Outcome(status if status in ("succeeded", "cancelled") else "failed")

    run_job(job_id, work, outcome, stoppable=True, also_stop=queue.cancel_marker(run_id).exists)
    ranks.barrier()
