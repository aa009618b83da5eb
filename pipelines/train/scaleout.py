"""Scale-out: the ``accelerate launch`` command and config for several GPUs or nodes, and the boundary
an execution backend (local process, Ray Jobs, Slurm) implements.

Why a boundary and not code per cluster: a run needs only its id and STUDIO_HOME
(``python -m studio train --run RUN_ID``), so a backend is "run this command there, tell me if it is
alive, stop it". The accelerate configs start from the ones TRL ships (ZeRO-2/3, FSDP2) with the
process count, machine count and precision of the run filled in.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml

from pipelines.train.spec import RunSpec
from core.errors import TrainingError

BACKENDS = {"deepspeed_zero2": "zero2.yaml", "deepspeed_zero3": "zero3.yaml", "fsdp": "fsdp2.yaml"}


def worker_command(run_id: str, python: str = "python") -> list[str]:
    """The command that runs (or resumes) a run wherever it executes."""
    return [python, "-m", "studio", "train", "--run", run_id]


def local_launch_command(run_id: str, processes: int, port: int, python: str = sys.executable) -> list[str]:
    """``accelerate launch`` of ``processes`` data-parallel ranks of a run on this machine (what the run's job
    starts when ``spec.processes`` > 1). ``--multi_gpu`` is accelerate's torchrun launcher: one process per
    GPU, or gloo processes on a machine without one. Precision is the run's (its TrainingArguments), not
    the launcher's; the port is the rendezvous of this launch, so two launches on one machine do not meet."""
    if processes < 2:
        raise TrainingError(f"processes = {processes}: a launch needs at least 2.", hint="Run one process directly.")
    return [python, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port), *worker_command(run_id, python)[1:]]


def accelerate_command(spec: RunSpec, backend: str = "deepspeed_zero2", *, num_processes: int = 8,
                       num_machines: int = 1, run_id: str = "RUN_ID", config_path: str = "accelerate.yaml"
                       ) -> tuple[str, str]:
    """(shell command, accelerate config YAML) that run this spec on ``num_processes`` GPUs over ``num_machines``."""
    if backend not in BACKENDS:
        raise TrainingError(f"backend = {backend!r} is not a scale-out backend.", hint="Use one of " + ", ".join(BACKENDS) + ".")
    if num_processes < 1 or num_machines < 1 or num_processes < num_machines:
        raise TrainingError(f"num_processes = {num_processes}, num_machines = {num_machines} is not a valid layout.",
                            hint="Use at least one process per machine.")
    import trl

    config = yaml.safe_load((Path(trl.__file__).parent / "accelerate_configs" / BACKENDS[backend]).read_text())
    precision = spec.hyper.precision
    config.update(num_processes=num_processes, num_machines=num_machines,
                  mixed_precision={"auto": "bf16", "bf16": "bf16", "fp16": "fp16", "fp32": "no"}[precision])
    if spec.hyper.gradient_checkpointing and backend == "fsdp":
        config.setdefault("fsdp_config", {})["fsdp_activation_checkpointing"] = True
    argv = ["accelerate", "launch", "--config_file", config_path]
    if num_machines > 1:
        argv += ["--machine_rank", "$MACHINE_RANK", "--main_process_ip", "$MAIN_PROCESS_IP", "--main_process_port", "29500"]
    argv += ["-m", "studio", "train", "--run", run_id]
    command = " ".join(a if a.startswith("$") else shlex.quote(a) for a in argv)
    return command, yaml.safe_dump(config, sort_keys=True)


class JobBackend(Protocol):
    """Where a run executes. Implementations: LocalProcessBackend here; Ray Jobs or Slurm can follow."""

    name: str

    def submit(self, run_id: str, env: dict[str, str]) -> str: ...

    def alive(self, handle: str) -> bool: ...

    def stop(self, handle: str) -> None: ...


@dataclass
class LocalProcessBackend:
    """A child process on this machine; the handle is its PID."""

    name: str = "local"
    log_path: Path | None = None

    def submit(self, run_id: str, env: dict[str, str]) -> str:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(worker_command(run_id, sys.executable), env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    cwd=str(Path(__file__).resolve().parents[2]))
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        return str(proc.pid)

    def alive(self, handle: str) -> bool:
        import psutil

        try:
            return psutil.Process(int(handle)).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def stop(self, handle: str) -> None:
        import os
        import signal

        try:
            os.kill(int(handle), signal.SIGTERM)  # the runner saves a checkpoint and ends 'cancelled'
        except ProcessLookupError:
            pass
