"""``python -m pipelines.train RUN_ID [--job-id JOB]``: run or resume one training run in this process.

This is the one command every execution backend runs (a local process, ``accelerate launch``, a Ray
job, a Slurm batch script): it needs only STUDIO_HOME and the run's id.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.train.runner import run_training
from studio.errors import StudioError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.train", description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--job-id", default=None, help="report progress into this job's row")
    args = parser.parse_args(argv)
    from studio.progress import ProgressReporter

    reporter = ProgressReporter(job_id=args.job_id)
    try:
        result = run_training(args.run_id, reporter=reporter)
    except StudioError as exc:
        reporter.finish("failed", str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    reporter.finish(result.status, None if result.status == "succeeded" else "Cancelled; the checkpoint is kept.")
    print(f"{result.run_id}: {result.status}" + (f" -> {result.output_model}" if result.output_model else ""))
    return 0 if result.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
