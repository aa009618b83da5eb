"""The processes of one run started by ``accelerate launch`` (or torchrun): who records, and how they agree.

Why: with several processes every rank trains, but the run must be recorded once. Rank 0 (the main
process) alone writes the database and the run's files (metrics, the checkpoint catalogue, the output
model, its card, the statuses); the others read. Every decision that depends on what the database or
the disk holds right now (which stages are finished, the checkpoint to resume from, where the next
stage starts) is taken by rank 0 and shared, so all ranks act on the same answer. Sharing and stop
votes go over a CPU (gloo) group of their own, which works beside NCCL on GPUs and never times out
while rank 0 waits for its turn in the device queue. A single process (no ``WORLD_SIZE`` > 1) gets a
``Ranks`` whose methods do nothing.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterator, Mapping

CONTROL_TIMEOUT = timedelta(days=7)  # rank 0 may wait this long in the device queue


@dataclass
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    _group: Any = field(default=None, repr=False)
    _vote: Any = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Ranks":
        """This process's place in a launch, from the variables accelerate/torchrun set."""
        env = os.environ if env is None else env
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world_size > 1

    def start(self, cuda: bool) -> "Ranks":
        """Join the launch's process group (the one the trainer then uses: NCCL on GPUs, gloo on CPUs)
        and open the CPU control group. Every rank must call this, in the same order."""
        if self.several and self._group is None:
            import torch.distributed as dist
            from accelerate import PartialState

            PartialState(cpu=not cuda)
            self._group = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
        return self

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (the others pass anything, usually None)."""
        if not self.several:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self._group)
        return box[0]

    def barrier(self) -> None:
        if self.several:
            import torch.distributed as dist

            dist.barrier(group=self._group)

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (it writes, say, a merged model); the others run it afterwards."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def agree(self, wanted: bool) -> bool:
        """One stop vote per step: returns whether any rank wanted to stop at the previous call, and sends
        this call's wish. The vote is asynchronous (it never waits on the step it is cast in), and every
        rank reads the same result at the same step, so all stop together."""
        import torch
        import torch.distributed as dist

        decided = self._settle()
        flag = torch.tensor([int(wanted)], dtype=torch.int32)
        self._vote = (flag, dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group, async_op=True))
        return decided

    def settle(self) -> None:
        """Wait for the vote still in flight (at the end of a stage, when every rank has cast the same number)."""
        self._settle()

    def _settle(self) -> bool:
        if self._vote is None:
            return False
        flag, work = self._vote
        self._vote = None
        work.wait()
        return bool(flag.item())


SINGLE = Ranks()
