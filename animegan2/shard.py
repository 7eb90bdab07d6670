"""Many files over many processes with torch's own launcher.

``torchrun --nproc_per_node N -m animegan2 stylize FOLDER -o OUT`` (or ``video`` over many
clips) starts N copies of the command. Every copy lists the same inputs in the same order and
takes every N-th of them from its ``RANK`` on, so each file is done by exactly one process;
each runs on its own GPU (``LOCAL_RANK``); the counts are summed over the processes at the
end and rank 0 prints the summary. Outside torchrun (no ``WORLD_SIZE``) there is one shard
holding everything and nothing here communicates.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")
# The others may still be working through their shares when a process reaches the final sum,
# so it waits as long as a share can take; torchrun stops them all if one process dies.
_FINAL_WAIT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world`` processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Shard:
        """The shard torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) gives."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def lead(self) -> bool:
        """Whether this process reports for the run (rank 0)."""
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        """This process's share: every ``world``-th item from ``rank`` on.

        >>> Shard(1, 2).take("abcde")
        ['b', 'd']
        """
        return list(items[self.rank :: self.world])

    def device(self, device: torch.device) -> torch.device:
        """The GPU of this process (``cuda:LOCAL_RANK``) when ``device`` is CUDA without an
        index; any other device as it is.

        >>> Shard(3, 4, 1).device(torch.device("cuda"))
        device(type='cuda', index=1)
        """
        if self.world > 1 and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def sum(self, counts: Sequence[int]) -> list[int]:
        """``counts`` added up element by element over every process (each must call it)."""
        if self.world == 1:
            return list(counts)
        import torch.distributed as dist

        dist.init_process_group("gloo", rank=self.rank, world_size=self.world, timeout=_FINAL_WAIT)
        try:
            total = torch.tensor(list(counts), dtype=torch.int64)
            dist.all_reduce(total)
            return total.tolist()
        finally:
            dist.destroy_process_group()
